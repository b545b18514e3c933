"""Migration 0010 (regions): rows written before it take the region their stored ARNs
name, and names become unique per account and region."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from servicecontrol_server.adapters.postgres import migrate
from servicecontrol_server.adapters.postgres.database import libpq_url, with_database

ACCOUNT = "123456789012"


@pytest.fixture
def empty_database_url(postgres_admin_url: str) -> Iterator[str]:
    name = f"m_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield with_database(postgres_admin_url, name)
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _arn(region: str, kind: str) -> str:
    return f"arn:aws:apprunner:{region}:{ACCOUNT}:{kind}/{uuid.uuid4().hex}"


def test_rows_before_0010_take_the_region_of_their_arns(empty_database_url: str) -> None:
    from alembic import command

    with migrate._migration_lock(empty_database_url) as conn:
        command.upgrade(migrate.alembic_config(empty_database_url, conn), "0009")
        conn.commit()
    with psycopg.connect(libpq_url(empty_database_url)) as conn:
        conn.execute("INSERT INTO accounts (account_id) VALUES (%s)", (ACCOUNT,))
        conn.execute(
            "INSERT INTO connections (connection_id, account_id, connection_name,"
            " connection_arn, provider_type, status) VALUES ('c1', %s, 'github', %s,"
            " 'GITHUB', 'AVAILABLE')",
            (ACCOUNT, _arn("eu-west-1", "connection")),
        )
        conn.execute(
            "INSERT INTO certificates (certificate_id, account_id, certificate_arn,"
            " domain_name, status) VALUES ('k1', %s, %s, 'shop.example.com', 'ISSUED')",
            (ACCOUNT, _arn("ap-south-1", "certificate")),
        )
        conn.execute(
            "INSERT INTO config_resources (config_id, account_id, kind, name, revision, arn,"
            " status) VALUES ('a1', %s, 'autoscalingconfiguration', 'scaling', 1, %s,"
            " 'ACTIVE')",
            (ACCOUNT, _arn("us-west-2", "autoscalingconfiguration")),
        )
        conn.execute(
            "INSERT INTO vpc_connectors (connector_id, account_id, connector_name, revision,"
            " connector_arn, subnets, security_groups, status) VALUES ('v1', %s, 'egress', 1,"
            " %s, '[]', '[]', 'ACTIVE')",
            (ACCOUNT, _arn("eu-central-1", "vpcconnector")),
        )

    migrate.upgrade_to_head(empty_database_url)

    with psycopg.connect(libpq_url(empty_database_url)) as conn:
        found = {
            table: conn.execute(f"SELECT region FROM {table}").fetchall()  # noqa: S608
            for table in ("connections", "certificates", "config_resources", "vpc_connectors")
        }
        # The same name in another region is a new row; in the same region, refused.
        conn.execute(
            "INSERT INTO connections (connection_id, account_id, connection_name,"
            " connection_arn, provider_type, status) VALUES ('c2', %s, 'github', %s,"
            " 'GITHUB', 'AVAILABLE')",
            (ACCOUNT, _arn("us-east-1", "connection")),
        )
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(
                "INSERT INTO connections (connection_id, account_id, connection_name,"
                " connection_arn, provider_type, status) VALUES ('c3', %s, 'github', %s,"
                " 'GITHUB', 'AVAILABLE')",
                (ACCOUNT, _arn("eu-west-1", "connection")),
            )
    assert found == {
        "connections": [("eu-west-1",)],
        "certificates": [("ap-south-1",)],
        "config_resources": [("us-west-2",)],
        "vpc_connectors": [("eu-central-1",)],
    }
