"""Terraform's hashicorp/aws provider, unchanged, against the App Runner endpoint: apply,
a plan that shows no changes, an import of a service the AWS CLI made that re-plans clean,
and a destroy that leaves every resource deleted (services DELETED, image copies gone, VPC
connectors INACTIVE, ingress connections DELETED)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from tests.support.aws import (
    TERRAFORM_PROVIDER,
    TERRAFORM_PROVIDER_VERSION,
    AppRunnerClient,
    Recorder,
    aws_cli,
    terraform_binary,
    terraform_environment,
    terraform_mirror,
    terraform_provider_block,
    terraform_provider_environment,
)
from tests.support.server import ACCOUNT, Harness, harness_settings, running_harness
from tests.support.waiting import wait_until

TERRAFORM = terraform_binary()
MIRROR = terraform_mirror()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(600),
    pytest.mark.skipif(TERRAFORM is None, reason="the terraform CLI is not installed"),
    pytest.mark.skipif(
        MIRROR is None,
        reason=f"no filesystem mirror of {TERRAFORM_PROVIDER} {TERRAFORM_PROVIDER_VERSION}",
    ),
]

ECR_IMAGE = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/hello-web:1.0"

RESOURCES = f"""
resource "aws_apprunner_connection" "github" {{
  connection_name = "tf-github"
  provider_type   = "GITHUB"
  tags = {{
    team = "platform"
  }}
}}

resource "aws_apprunner_service" "web" {{
  service_name = "tf-web"
  source_configuration {{
    auto_deployments_enabled = false
    image_repository {{
      image_identifier      = "{ECR_IMAGE}"
      image_repository_type = "ECR"
      image_configuration {{
        port = "8080"
        runtime_environment_variables = {{
          GREETING = "hello"
        }}
      }}
    }}
  }}
  instance_configuration {{
    cpu    = "1024"
    memory = "2048"
  }}
  health_check_configuration {{
    protocol = "HTTP"
    path     = "/health"
  }}
  tags = {{
    team = "web"
    env  = "test"
  }}
}}

resource "aws_apprunner_custom_domain_association" "www" {{
  service_arn          = aws_apprunner_service.web.arn
  domain_name          = "tf.example.com"
  enable_www_subdomain = true
}}

resource "aws_apprunner_vpc_connector" "egress" {{
  vpc_connector_name = "tf-egress"
  subnets            = ["subnet-0a1b2c3d", "subnet-1a2b3c4d"]
  security_groups    = ["sg-0a1b2c3d"]
  tags = {{
    team = "net"
  }}
}}

resource "aws_apprunner_service" "private" {{
  service_name = "tf-private"
  source_configuration {{
    auto_deployments_enabled = false
    image_repository {{
      image_identifier      = "{ECR_IMAGE}"
      image_repository_type = "ECR"
    }}
  }}
  network_configuration {{
    egress_configuration {{
      egress_type       = "VPC"
      vpc_connector_arn = aws_apprunner_vpc_connector.egress.arn
    }}
    ingress_configuration {{
      is_publicly_accessible = false
    }}
  }}
}}

resource "aws_apprunner_vpc_ingress_connection" "private" {{
  name        = "tf-private-in"
  service_arn = aws_apprunner_service.private.arn
  ingress_vpc_configuration {{
    vpc_id          = "vpc-0a1b2c3d"
    vpc_endpoint_id = "vpce-0a1b2c3d"
  }}
  tags = {{
    team = "net"
  }}
}}
"""

IMPORTED = f"""
resource "aws_apprunner_service" "imported" {{
  service_name = "cli-made"
  source_configuration {{
    auto_deployments_enabled = false
    image_repository {{
      image_identifier      = "{ECR_IMAGE}"
      image_repository_type = "ECR"
    }}
  }}
  tags = {{
    origin = "cli"
  }}
}}
"""


class Terraform:
    """The terraform CLI in one working directory. `init` installs the provider from the
    mirror; then, with `attach`, the installed provider starts once, on its own (`-debug`),
    and every later command attaches to it (TF_REATTACH_PROVIDERS) instead of loading the
    large binary anew. App Runner's endpoint is then in that process's environment only, so
    a command that did not attach would not reach the server.

    Without `attach`, each command starts the provider itself, a process per provider
    configuration, with the endpoint in terraform's environment: a configuration with a
    second, aliased `aws` provider needs that (one process serving both configurations
    signs some of the aliased one's calls for the default's region), and an `endpoints`
    block instead would cost seconds of CPU in every plan and apply."""

    def __init__(
        self, workdir: Path, port: int, credentials: tuple[str, str], *, attach: bool = True
    ) -> None:
        assert TERRAFORM is not None and MIRROR is not None
        self.workdir = workdir
        self.port = port
        self.credentials = credentials
        self.attach = attach
        self.env = terraform_environment(workdir, MIRROR)
        self.provider: asyncio.subprocess.Process | None = None

    def configure(self, resources: str) -> None:
        (self.workdir / "main.tf").write_text(
            terraform_provider_block(self.credentials) + resources
        )

    async def init(self) -> None:
        await self.run("init", "-no-color")
        # Installed from the mirror, at the pinned version, and locked.
        installed = self.workdir / ".terraform" / "providers" / TERRAFORM_PROVIDER
        [binary] = (installed / TERRAFORM_PROVIDER_VERSION).glob("*/terraform-provider-aws_*")
        lock = (self.workdir / ".terraform.lock.hcl").read_text()
        assert f'version     = "{TERRAFORM_PROVIDER_VERSION}"' in lock, lock
        if not self.attach:
            self.env = terraform_provider_environment(self.env, self.port)
            return
        log_path = self.workdir / "provider.log"
        with log_path.open("wb") as log:
            self.provider = await asyncio.create_subprocess_exec(
                str(binary),
                "-debug",
                cwd=self.workdir,
                env=terraform_provider_environment(self.env, self.port),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )
        provider = self.provider

        def reattach() -> str | None:
            found = re.search(r"TF_REATTACH_PROVIDERS='(.*)'", log_path.read_text())
            assert provider.returncode is None, log_path.read_text()
            return found[1] if found else None

        await wait_until(lambda: reattach() is not None, timeout=60, interval=0.1)
        line = reattach()
        assert line is not None
        assert set(json.loads(line)) == {TERRAFORM_PROVIDER}, line
        self.env["TF_REATTACH_PROVIDERS"] = line

    async def stop(self) -> None:
        """Stops the provider process, if one was started and still runs."""
        if self.provider is None or self.provider.returncode is not None:
            return
        self.provider.terminate()
        try:
            await asyncio.wait_for(self.provider.wait(), 30)
        except TimeoutError:
            self.provider.kill()
            await self.provider.wait()

    async def run(self, *args: str, ok: tuple[int, ...] = (0,)) -> tuple[int, str]:
        assert TERRAFORM is not None
        proc = await asyncio.create_subprocess_exec(
            TERRAFORM,
            *args,
            cwd=self.workdir,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 240)
        text_out = out.decode()
        assert proc.returncode in ok, (
            f"terraform {' '.join(args)} exited {proc.returncode}:\n{text_out}"
        )
        assert proc.returncode is not None
        return proc.returncode, text_out

    def state(self) -> dict[str, Any]:
        """The state file's resources by address (read directly: `terraform show` would
        run the provider once more)."""
        path = self.workdir / "terraform.tfstate"
        resources = json.loads(path.read_text()).get("resources", []) if path.exists() else []
        return {
            f"{r['type']}.{r['name']}": r["instances"][0]["attributes"]
            for r in resources
            if r["mode"] == "managed" and r["instances"]
        }


@pytest.fixture
async def terraform(tmp_path: Path) -> AsyncIterator[Callable[..., Terraform]]:
    """Makes the test's Terraform against a harness; stops its provider process at the
    end, whether the test passed or not."""
    made: list[Terraform] = []

    def make(harness: Harness, attach: bool = True) -> Terraform:
        made.append(Terraform(tmp_path, harness.aws_port, harness.aws_credentials(), attach=attach))
        return made[-1]

    yield make
    for tf in made:
        await tf.stop()


async def scalar(h: Harness, sql: str) -> Any:
    async with h.app.engine.connect() as conn:
        return (await conn.execute(text(sql))).scalar_one()


async def image_objects(h: Harness, service_id: str) -> int:
    listing = h.app.store.list_objects(h.settings.image_bucket, f"services/{service_id}/")
    return await asyncio.to_thread(lambda: len(list(listing)))


async def test_apply_plan_import_destroy(
    harness: Harness, terraform: Callable[..., Terraform]
) -> None:
    recorder = Recorder()
    aws = AppRunnerClient(harness.aws_port, recorder, harness.aws_credentials())
    tf = terraform(harness)
    tf.configure(RESOURCES)
    await tf.init()
    await tf.run("apply", "-auto-approve", "-no-color")

    state = tf.state()
    web = state["aws_apprunner_service.web"]
    assert web["status"] == "RUNNING"
    assert web["tags"] == {"team": "web", "env": "test"}
    described = (await aws.describe_service(ServiceArn=web["arn"]))["Service"]
    assert described["InstanceConfiguration"]["Cpu"] == "1024"
    tags = await aws.list_tags_for_resource(ResourceArn=web["arn"])
    assert {t["Key"]: t["Value"] for t in tags["Tags"]} == {"team": "web", "env": "test"}
    www = state["aws_apprunner_custom_domain_association.www"]
    assert www["status"] == "pending_certificate_dns_validation"
    assert www["dns_target"] == described["ServiceUrl"]
    assert state["aws_apprunner_connection.github"]["status"] == "PENDING_HANDSHAKE"
    connector = state["aws_apprunner_vpc_connector.egress"]
    assert (connector["status"], connector["vpc_connector_revision"]) == ("ACTIVE", 1)
    private = state["aws_apprunner_service.private"]
    [network] = private["network_configuration"]
    assert network["egress_configuration"][0]["vpc_connector_arn"] == connector["arn"]
    assert network["ingress_configuration"][0]["is_publicly_accessible"] is False
    ingress = state["aws_apprunner_vpc_ingress_connection.private"]
    assert (ingress["status"], ingress["service_arn"]) == ("AVAILABLE", private["arn"])
    assert ingress["domain_name"]

    code, out = await tf.run("plan", "-detailed-exitcode", "-no-color", ok=(0, 2))
    assert code == 0, f"the plan after apply shows changes:\n{out}"

    # A service the AWS CLI made, imported, re-plans clean.
    source = json.dumps(
        {
            "ImageRepository": {"ImageIdentifier": ECR_IMAGE, "ImageRepositoryType": "ECR"},
            "AutoDeploymentsEnabled": False,
        }
    )
    code, made, err = await aws_cli(
        harness.aws_port,
        harness.aws_credentials(),
        "apprunner",
        "create-service",
        "--service-name",
        "cli-made",
        "--source-configuration",
        source,
        "--tags",
        "Key=origin,Value=cli",
    )
    assert code == 0, err
    imported = json.loads(made)["Service"]
    await harness.wait(json.loads(made)["OperationId"])
    tf.configure(RESOURCES + IMPORTED)
    await tf.run("import", "-no-color", "aws_apprunner_service.imported", imported["ServiceArn"])
    code, out = await tf.run("plan", "-detailed-exitcode", "-no-color", ok=(0, 2))
    assert code == 0, f"the plan after import shows changes:\n{out}"

    service_ids = [web["service_id"], private["service_id"], imported["ServiceId"]]
    assert all([await image_objects(harness, sid) for sid in service_ids])
    await tf.run("destroy", "-auto-approve", "-no-color")
    assert tf.state() == {}
    for arn in (web["arn"], private["arn"], imported["ServiceArn"]):
        assert (await aws.describe_service(ServiceArn=arn))["Service"]["Status"] == "DELETED"
    for sid in service_ids:
        assert await image_objects(harness, sid) == 0
    assert await scalar(harness, "select count(*) from resource_tags") == 0
    assert await scalar(harness, "select count(*) from custom_domains") == 0
    assert await scalar(harness, "select count(*) from connections where status <> 'DELETED'") == 0
    assert await scalar(harness, "select count(*) from vpc_connectors where status = 'ACTIVE'") == 0
    live_ingress = "select count(*) from vpc_ingress_connections where status <> 'DELETED'"
    assert await scalar(harness, live_ingress) == 0
    assert recorder.problems() == []


# ----- auto scaling and observability configurations -----

CONFIGURATIONS = f"""
resource "aws_apprunner_auto_scaling_configuration_version" "scaling" {{
  auto_scaling_configuration_name = "tf-scaling"
  max_concurrency                 = 50
  min_size                        = 2
  max_size                        = 10
  tags = {{
    team = "web"
  }}
}}

resource "aws_apprunner_auto_scaling_configuration_version" "fallback" {{
  auto_scaling_configuration_name = "tf-fallback"
}}

resource "aws_apprunner_default_auto_scaling_configuration_version" "default" {{
  auto_scaling_configuration_arn = aws_apprunner_auto_scaling_configuration_version.fallback.arn
}}

resource "aws_apprunner_observability_configuration" "tracing" {{
  observability_configuration_name = "tf-tracing"
  trace_configuration {{
    vendor = "AWSXRAY"
  }}
  tags = {{
    team = "web"
  }}
}}

# The same names in a second region, through an aliased provider signing for it.
resource "aws_apprunner_auto_scaling_configuration_version" "scaling_away" {{
  provider                        = aws.away
  auto_scaling_configuration_name = "tf-scaling"
  max_concurrency                 = 20
}}

resource "aws_apprunner_service" "scaled_away" {{
  provider                       = aws.away
  service_name                   = "tf-scaled"
  auto_scaling_configuration_arn = aws_apprunner_auto_scaling_configuration_version.scaling_away.arn
  source_configuration {{
    auto_deployments_enabled = false
    image_repository {{
      image_identifier      = "{ECR_IMAGE}"
      image_repository_type = "ECR"
    }}
  }}
}}

resource "aws_apprunner_service" "scaled" {{
  service_name                   = "tf-scaled"
  auto_scaling_configuration_arn = aws_apprunner_auto_scaling_configuration_version.scaling.arn
  observability_configuration {{
    observability_enabled           = true
    observability_configuration_arn = aws_apprunner_observability_configuration.tracing.arn
  }}
  source_configuration {{
    auto_deployments_enabled = false
    image_repository {{
      image_identifier      = "{ECR_IMAGE}"
      image_repository_type = "ECR"
    }}
  }}
}}
"""


AWAY = "eu-west-1"


def away_provider(credentials: tuple[str, str]) -> str:
    """A second `aws` provider, aliased `away`, signing for the second region served (the
    endpoint is in terraform's environment, as for the first)."""
    return f"""
provider "aws" {{
  alias                       = "away"
  region                      = "{AWAY}"
  access_key                  = "{credentials[0]}"
  secret_key                  = "{credentials[1]}"
  skip_credentials_validation = true
  skip_requesting_account_id  = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
}}
"""


@pytest.fixture
async def two_regions(database_url: str, s3_server: Any, tmp_path: Path) -> AsyncIterator[Harness]:
    settings = harness_settings(database_url, s3_server, tmp_path, regions=f"us-east-1,{AWAY}")
    async with running_harness(settings, tmp_path) as h:
        h.push_image()
        yield h


async def test_configurations_apply_plan_destroy(
    two_regions: Harness, terraform: Callable[..., Terraform]
) -> None:
    harness = two_regions
    recorder = Recorder()
    aws = AppRunnerClient(harness.aws_port, recorder, harness.aws_credentials())
    away = AppRunnerClient(harness.aws_port, recorder, harness.aws_credentials(), region=AWAY)
    [prior] = (await aws.list_auto_scaling_configurations())["AutoScalingConfigurationSummaryList"]
    # Terraform starts a provider process per configuration (see Terraform).
    tf = terraform(harness, attach=False)
    tf.configure(away_provider(harness.aws_credentials()) + CONFIGURATIONS)
    await tf.init()
    await tf.run("apply", "-auto-approve", "-no-color")

    state = tf.state()
    scaling = state["aws_apprunner_auto_scaling_configuration_version.scaling"]
    assert (scaling["max_concurrency"], scaling["min_size"], scaling["max_size"]) == (50, 2, 10)
    assert scaling["auto_scaling_configuration_revision"] == 1 and scaling["latest"]
    assert scaling["has_associated_service"] is False  # read before the service existed
    fallback = state["aws_apprunner_auto_scaling_configuration_version.fallback"]
    default = state["aws_apprunner_default_auto_scaling_configuration_version.default"]
    assert default["auto_scaling_configuration_arn"] == fallback["arn"]
    tracing = state["aws_apprunner_observability_configuration.tracing"]
    assert tracing["trace_configuration"] == [{"vendor": "AWSXRAY"}]
    service = state["aws_apprunner_service.scaled"]
    assert service["auto_scaling_configuration_arn"] == scaling["arn"]
    assert service["observability_configuration"] == [
        {"observability_configuration_arn": tracing["arn"], "observability_enabled": True}
    ]
    described = (
        await aws.describe_auto_scaling_configuration(AutoScalingConfigurationArn=fallback["arn"])
    )["AutoScalingConfiguration"]
    assert described["IsDefault"]
    # The second region holds its own revision 1 of the same name and its own service of
    # the same name, each listed only there.
    scaling_away = state["aws_apprunner_auto_scaling_configuration_version.scaling_away"]
    service_away = state["aws_apprunner_service.scaled_away"]
    assert scaling_away["arn"].split(":")[3] == AWAY
    assert scaling_away["auto_scaling_configuration_revision"] == 1
    assert service_away["arn"].split(":")[3] == AWAY
    assert service_away["auto_scaling_configuration_arn"] == scaling_away["arn"]
    listed_away = (await away.list_services())["ServiceSummaryList"]
    assert [s["ServiceArn"] for s in listed_away] == [service_away["arn"]]
    listed_home = (await aws.list_services())["ServiceSummaryList"]
    assert [s["ServiceArn"] for s in listed_home] == [service["arn"]]

    code, out = await tf.run("plan", "-detailed-exitcode", "-no-color", ok=(0, 2))
    assert code == 0, f"the plan after apply shows changes:\n{out}"

    # The default cannot be deleted (App Runner refuses a reserved configuration): give it
    # back to the built-in one first, as the provider's own tests do.
    await aws.update_default_auto_scaling_configuration(
        AutoScalingConfigurationArn=prior["AutoScalingConfigurationArn"]
    )
    await tf.run("destroy", "-auto-approve", "-no-color")
    assert tf.state() == {}
    described_service = (await aws.describe_service(ServiceArn=service["arn"]))["Service"]
    assert described_service["Status"] == "DELETED"
    gone_away = (await away.describe_service(ServiceArn=service_away["arn"]))["Service"]
    assert gone_away["Status"] == "DELETED"
    for arn in (scaling["arn"], fallback["arn"]):
        gone = (await aws.describe_auto_scaling_configuration(AutoScalingConfigurationArn=arn))[
            "AutoScalingConfiguration"
        ]
        assert gone["Status"] == "inactive"
    gone = (
        await aws.describe_observability_configuration(ObservabilityConfigurationArn=tracing["arn"])
    )["ObservabilityConfiguration"]
    assert gone["Status"] == "INACTIVE"
    assert await scalar(harness, "select count(*) from resource_tags") == 0
    assert recorder.problems() == []
