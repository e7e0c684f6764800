"""Competition adapters: everything that differs between Kaggle competitions lives behind one interface.

An adapter knows its competition's file layout (extracted or zipped), lists train and test ids, reads images,
masks and metadata, names its metric and writes its submission rows. Notebooks only ever say
``get_competition(COMPETITION, DATA_DIR)``; a new competition is a new module here, not a notebook edit.
"""

from seglib.competitions.base import Competition, get_competition, known_competitions, register
from seglib.competitions import carvana, folder, handbone, tgs  # noqa: F401  (each registers its competition)

__all__ = ["Competition", "get_competition", "known_competitions", "register"]
