from cimsim.cli import main

raise SystemExit(main())
