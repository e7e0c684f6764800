"""Named sets of notebook parameters, for ``python -m seglib run --recipe NAME``. "tgs_cpu" is the notebooks'
defaults, the best ``benchmarks/quality.py`` measured on real TGS images in 15 CPU-minutes; the GPU recipes are
the winners' pretrained-encoder U-Nets, not run here (no GPU): their settings follow the published solutions.
"""

RECIPES = {
    "tgs_cpu": {},
    "tgs_gpu": {
        "ARCHITECTURE": "encoder_unet", "MODEL": {"encoder": "ResNet50", "weights": "imagenet"}, "IMG_SIZE": 128,
        "BATCH_SIZE": 32, "MIXED_PRECISION": "mixed_float16", "LOSS": "bce_dice", "FOLDS": 5, "EPOCHS": 80,
        "TRAIN_MINUTES": 50.0, "FINE_TUNE_LOSS": "lovasz", "FINE_TUNE_EPOCHS": 40, "FINE_TUNE_MINUTES": 20.0,
        "TTA": "hflip",
    },
    "carvana_gpu": {
        "COMPETITION": "carvana", "ARCHITECTURE": "encoder_unet",
        "MODEL": {"encoder": "EfficientNetB0", "weights": "imagenet"}, "IMG_SIZE": 1024, "BATCH_SIZE": 4,
        "MIXED_PRECISION": "mixed_float16", "LOSS": "bce_dice", "EPOCHS": 30, "TRAIN_MINUTES": 360.0,
        "STATS_MAX_IMAGES": 3000, "TTA": "hflip",
    },
}


def recipe_parameters(name, overrides=None):
    """The notebook parameters of recipe ``name``, with ``overrides`` (e.g. the command line's -p) winning."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; known: {sorted(RECIPES)}")
    return {**RECIPES[name], **(overrides or {})}
