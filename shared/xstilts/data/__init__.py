"""Reading task splits from a local XTREME-style folder or the Hugging Face hub."""

from xstilts.data.loading import DataSource, fingerprint_split, load_split

__all__ = ["DataSource", "fingerprint_split", "load_split"]
