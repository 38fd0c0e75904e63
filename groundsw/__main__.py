from groundsw.cli import main

raise SystemExit(main())
