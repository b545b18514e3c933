"""`docker save` archives for tests: the builder the `--sample` push uses."""

from servicecontrol_server.application.sample_image import build_docker_archive

__all__ = ["build_docker_archive"]
