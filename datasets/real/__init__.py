"""Real face data: CelebA, FFHQ, VGGFace2 and identity-per-folder trees turned into worlds.

``mibench run --world celeba --root PATH`` builds the world of :mod:`.world` (registered here as
``celeba`` and ``folders``/``vggface2``); ``mibench data prepare NAME --root PATH`` checks a
folder first (:mod:`.prepare`). Optional 5-point alignment lives in :mod:`.align`.
"""

from mibench.datasets.real import world as _world  # noqa: F401  (registers celeba, folders)
