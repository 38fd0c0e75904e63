from flight.app import main

raise SystemExit(main())
