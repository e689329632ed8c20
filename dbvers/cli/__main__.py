from dbvers.cli import main

raise SystemExit(main())
