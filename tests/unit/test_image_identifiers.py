"""Image identifiers in App Runner's forms: a private ECR URI or ECR Public, each naming a
repository of the source registry, with ImageRepositoryType matching the form."""

from __future__ import annotations

import pytest

from servicecontrol_server.domain import configuration, names

ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


@pytest.mark.parametrize(
    ("identifier", "parsed"),
    [
        ("hello-web:1.0", ("hello-web", "1.0")),
        (f"{ECR}/hello-web:1.0", ("hello-web", "1.0")),
        (f"{ECR}/team/hello-web", ("team/hello-web", "latest")),
        ("public.ecr.aws/nginx/nginx:1.27", ("nginx/nginx", "1.27")),
    ],
)
def test_registry_hosts_name_source_registry_repositories(
    identifier: str, parsed: tuple[str, str]
) -> None:
    assert names.parse_image_identifier(identifier) == parsed


@pytest.mark.parametrize(
    "identifier",
    ["public.ecr.aws/nginx", f"{ECR}/Hello:1.0", "12345.dkr.ecr.us-east-1.amazonaws.com/x:1"],
)
def test_malformed_identifiers_are_refused(identifier: str) -> None:
    with pytest.raises(ValueError):
        names.parse_image_identifier(identifier)


@pytest.mark.parametrize(
    ("identifier", "declared", "ok"),
    [
        (f"{ECR}/hello-web:1.0", "ECR", True),
        ("public.ecr.aws/nginx/nginx:1.27", "ECR_PUBLIC", True),
        ("public.ecr.aws/nginx/nginx:1.27", "ECR", False),
        (f"{ECR}/hello-web:1.0", "ECR_PUBLIC", False),
        ("hello-web:1.0", "ECR", True),
    ],
)
def test_repository_type_must_match_the_form(identifier: str, declared: str, ok: bool) -> None:
    source = {
        "image_repository": {"image_identifier": identifier, "image_repository_type": declared}
    }
    violations = configuration.validate_source(source)
    assert (violations == []) is ok, violations


DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("identifier", "parsed"),
    [
        (f"hello-web@{DIGEST}", ("hello-web", DIGEST)),
        (f"{ECR}/team/hello-web@{DIGEST}", ("team/hello-web", DIGEST)),
        (f"public.ecr.aws/nginx/nginx@{DIGEST}", ("nginx/nginx", DIGEST)),
    ],
)
def test_digests_name_an_image_by_its_manifest(identifier: str, parsed: tuple[str, str]) -> None:
    assert names.parse_image_identifier(identifier) == parsed
    assert names.is_digest(parsed[1])
    # App Runner's own pattern accepts each form on the wire.
    from servicecontrol_server.api.aws_json import model

    model.validate_request(
        "CreateService",
        {
            "ServiceName": "pinned",
            "SourceConfiguration": {
                "ImageRepository": {
                    "ImageIdentifier": identifier,
                    "ImageRepositoryType": names.image_registry_type(identifier),
                }
            },
        },
    )


@pytest.mark.parametrize(
    "identifier", [f"hello@{DIGEST[:-1]}", "hello@sha512:" + "0" * 64, f"hello@{DIGEST}:1"]
)
def test_malformed_digests_are_refused(identifier: str) -> None:
    with pytest.raises(ValueError, match="digest|tag"):
        names.parse_image_identifier(identifier)


async def test_the_source_registry_resolves_a_digest() -> None:
    import hashlib

    from servicecontrol_server.application.images import (
        ImageNotFound,
        copy_image,
        manifest_key,
        store_manifest,
    )
    from servicecontrol_server.application.results import Configs
    from servicecontrol_server.domain.model import ServiceStatus

    from .harness import ACCOUNT, Unit

    unit = Unit()
    # Pushed before manifests were kept by digest: found among the repository's tags.
    unit.push_image("shop/web:v1")
    bucket = unit.settings.source_bucket
    body = unit.store.get_bytes(bucket, manifest_key("shop/web", "v1"))
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    copied = copy_image(unit.store, bucket, f"shop/web@{digest}", "images", "x/")
    assert copied.manifest_digest == digest
    # Kept by digest as a push now keeps it: found under its own key.
    other = body.replace(b'"schemaVersion": 2', b'"schemaVersion":2')
    store_manifest(unit.store, bucket, "shop/api", "v2", other)
    other_digest = "sha256:" + hashlib.sha256(other).hexdigest()
    assert unit.store.get_bytes(bucket, manifest_key("shop/api", other_digest)) == other
    with pytest.raises(ImageNotFound):
        copy_image(unit.store, bucket, f"shop/web@{other_digest}", "images", "y/")
    with pytest.raises(ImageNotFound):
        copy_image(unit.store, bucket, "shop/web@sha256:" + "0" * 64, "images", "z/")

    created = await unit.services.create_service(
        ACCOUNT,
        "pinned-app",
        Configs(
            source={
                "image_repository": {
                    "image_identifier": f"{ECR}/shop/web@{digest}",
                    "image_repository_type": "ECR",
                }
            }
        ),
    )
    await unit.run_jobs()
    assert unit.db.service(created.service.service_id).status is ServiceStatus.RUNNING
