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
