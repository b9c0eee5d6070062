from sweeper.cli._launch import main

raise SystemExit(main())
