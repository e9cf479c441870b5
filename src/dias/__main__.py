from dias.cli import main

raise SystemExit(main())
