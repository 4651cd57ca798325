"""What a run stores: the records of the loop, atomic JSON and JSON Lines files, user data files."""
