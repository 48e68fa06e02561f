"""The runtime's own payloads, by concern; ``dovecote.activity`` re-exports every one
(``act.Presence``). A federation's payloads live with the services that publish them."""
