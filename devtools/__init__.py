"""Developer and operator tooling for rokt-calendar-bridge; never deployed to Lambda."""
