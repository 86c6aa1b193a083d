"""A mock partner API that replays recorded matches in the football-data.org and API-Football formats."""
