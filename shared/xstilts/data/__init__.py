"""Reading task splits from a local XTREME-style folder or the Hugging Face hub."""

from xstilts.data.examples import PairExample
from xstilts.data.loading import DataSource, fingerprint_split, load_split, resolve_local_file

__all__ = ["DataSource", "PairExample", "fingerprint_split", "load_split", "resolve_local_file"]
