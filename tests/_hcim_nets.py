"""A small HCiM test network and its inputs, shared by the tests of HCiM's options (ADC-read layers, thresholds)."""

import torch
from torch import nn


def small_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 5, 3, padding=1), nn.BatchNorm2d(5), nn.ReLU(), nn.Conv2d(5, 6, 3, stride=2),
                         nn.ReLU(), nn.Flatten(), nn.Linear(6 * 3 * 3, 7)).double().eval()


def inputs():
    torch.manual_seed(1)
    return torch.rand(6, 2, 8, 8, dtype=torch.float64) - 0.2     # signed inputs of the first layer
