from .base import *  # noqa: F403
from .base import env

# Off unless asked for: the API answers problem+json even for unknown URLs, and WhiteNoise
# serves the admin's and Swagger UI's files without DEBUG.
DEBUG = env.bool("DJANGO_DEBUG", default=False)
