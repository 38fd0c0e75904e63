from flight.launch import main

raise SystemExit(main())
