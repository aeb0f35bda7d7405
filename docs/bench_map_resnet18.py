"""Issue 19's mapping benchmark: map + calibrate a CIFAR-size third-party ResNet-18 (torchvision's resnet18 as written
there, 10 classes, on 3x32x32 inputs: 21 mapped layers, 11.2 M weights) on 512 calibration images, ISAAC's defaults.

    PYTHONPATH=$PWD python docs/bench_map_resnet18.py [KEY=VALUE ...] [--cuda]   # overrides, e.g. adc.bits=6

``--cuda``: the torch backend on the GPU (issue 19's target there: 5 s), the network and images handed over on the
host as ``cimsim run --device cuda`` hands them; a first mapping on one batch starts CUDA and compiles the kernels.

The weights are torch's default initialization (seed 0) with batch-norm statistics drawn away from the identity, the
calibration images uniform noise (seed 1): the mapping's work does not depend on training. Prints the wall time of
``map_model`` and its phases, the peak memory, and a digest of every calibrated ADC range (equal digests: equal
ranges, for before/after comparisons).
"""
import hashlib
import resource
import sys
import time

import numpy as np
import torch
from torch import nn

class BasicBlock(nn.Module):   # written the way torchvision writes it, independent of cimsim's zoo
    expansion = 1
    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False); self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False); self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
    def forward(self, x):
        idt = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None: idt = self.downsample(x)
        return self.relu(out + idt)

class ResNet18(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False); self.bn1 = nn.BatchNorm2d(64); self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make(64, 2); self.layer2 = self._make(128, 2, 2); self.layer3 = self._make(256, 2, 2); self.layer4 = self._make(512, 2, 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1)); self.fc = nn.Linear(512, num_classes)
    def _make(self, planes, blocks, stride=1):
        ds = None
        if stride != 1 or self.inplanes != planes:
            ds = nn.Sequential(nn.Conv2d(self.inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
        layers = [BasicBlock(self.inplanes, planes, stride, ds)]; self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)
    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))

torch.manual_seed(0)
model = ResNet18().eval()
for m in model.modules():   # BN statistics that are not the identity
    if isinstance(m, nn.BatchNorm2d):
        m.running_mean.uniform_(-0.1, 0.1); m.running_var.uniform_(0.5, 1.5)
g = torch.Generator().manual_seed(1)
cal = [(torch.rand(64, 3, 32, 32, generator=g), torch.zeros(64, dtype=torch.long)) for _ in range(8)]
import cimsim  # noqa: E402
from cimsim.mappers import mapper  # noqa: E402

arch = cimsim.arch.get("isaac", **dict(a.split("=") for a in sys.argv[1:] if "=" in a))
engine = dict(backend="torch", device="cuda") if "--cuda" in sys.argv else {}
if engine:
    mapper.map_model(model, arch, cal[:1], seed=0, progress=False, **engine)   # CUDA and the kernels start once
    torch.cuda.synchronize()
t = time.perf_counter()
m = mapper.map_model(model, arch, cal, seed=0, progress=False, **engine)
if engine:
    torch.cuda.synchronize()
dt = time.perf_counter() - t
print(f"map+calibrate {dt:.1f} s; timings {({k: round(v, 2) for k, v in m.map_timings.items()})}; peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1e6:.2f} GB")
h = hashlib.sha256()
for name, layer in m.mapped_layers.items():
    for xb in layer.crossbars:
        h.update(np.asarray(xb._range, dtype=np.float64).tobytes())
print("ranges sha", h.hexdigest()[:16], "layers", len(m.mapped_layers))
