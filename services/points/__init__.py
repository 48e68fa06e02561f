"""Points: awards for what people do, in a durable ledger, and a live leaderboard."""
