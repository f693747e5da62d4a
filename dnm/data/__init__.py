"""Data shipped with dnm (WordNet 3.0 word lists) and the script that builds them."""
