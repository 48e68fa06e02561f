"""The bus and the browsers: the websocket hub and its frames, what a page may command, what
the gateway knows of the federation now, and whether it can reach the bus at all."""
