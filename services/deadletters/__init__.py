"""The deadletters service: keeps every dead letter, lists and replays them for operators."""
