from sweeper._launch import main

raise SystemExit(main())
