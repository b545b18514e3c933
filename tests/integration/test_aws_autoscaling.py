"""Auto scaling and observability configurations on the App Runner endpoint through the
real boto3 client: revisions, listings and their pages, deletes, the default, tags, and
services that use them. Every answer is held to botocore's model."""

from __future__ import annotations

import asyncio

import pytest
from botocore.exceptions import ClientError

from servicecontrol_server.domain.identity import Role
from tests.support.aws import AppRunnerClient, Recorder
from tests.support.aws_json import IMAGE_SOURCE, code_of
from tests.support.server import ACCOUNT, OTHER_ACCOUNT, Harness

PREFIX = f"arn:aws:apprunner:us-east-1:{ACCOUNT}:autoscalingconfiguration"
OBS_PREFIX = f"arn:aws:apprunner:us-east-1:{ACCOUNT}:observabilityconfiguration"


async def test_revisions_describe_list_and_pages(aws: AppRunnerClient) -> None:
    first = (
        await aws.create_auto_scaling_configuration(
            AutoScalingConfigurationName="high-avail", Tags=[{"Key": "team", "Value": "web"}]
        )
    )["AutoScalingConfiguration"]
    second = (
        await aws.create_auto_scaling_configuration(
            AutoScalingConfigurationName="high-avail", MaxConcurrency=50, MinSize=2, MaxSize=10
        )
    )["AutoScalingConfiguration"]

    assert (
        first["AutoScalingConfigurationRevision"],
        second["AutoScalingConfigurationRevision"],
    ) == (1, 2)
    assert (first["MaxConcurrency"], first["MinSize"], first["MaxSize"]) == (100, 1, 25)
    assert (second["MaxConcurrency"], second["MinSize"], second["MaxSize"]) == (50, 2, 10)
    assert first["AutoScalingConfigurationArn"].startswith(f"{PREFIX}/high-avail/1/")
    assert first["Status"] == "active" and second["Latest"]
    assert (second["IsDefault"], second["HasAssociatedService"]) == (False, False)
    assert "DeletedAt" not in second

    described = (
        await aws.describe_auto_scaling_configuration(
            AutoScalingConfigurationArn=first["AutoScalingConfigurationArn"]
        )
    )["AutoScalingConfiguration"]
    assert described["Latest"] is False
    latest = (
        await aws.describe_auto_scaling_configuration(
            AutoScalingConfigurationArn=f"{PREFIX}/high-avail"
        )
    )["AutoScalingConfiguration"]
    assert latest["AutoScalingConfigurationArn"] == second["AutoScalingConfigurationArn"]
    tags = await aws.list_tags_for_resource(ResourceArn=first["AutoScalingConfigurationArn"])
    assert tags["Tags"] == [{"Key": "team", "Value": "web"}]

    listed = await aws.list_auto_scaling_configurations()
    assert [
        (s["AutoScalingConfigurationName"], s["AutoScalingConfigurationRevision"])
        for s in listed["AutoScalingConfigurationSummaryList"]
    ] == [("DefaultConfiguration", 1), ("high-avail", 2)]
    assert "NextToken" not in listed
    every = await aws.list_auto_scaling_configurations(
        AutoScalingConfigurationName="high-avail", LatestOnly=False
    )
    assert len(every["AutoScalingConfigurationSummaryList"]) == 2
    page = await aws.list_auto_scaling_configurations(LatestOnly=False, MaxResults=2)
    assert len(page["AutoScalingConfigurationSummaryList"]) == 2 and page["NextToken"]
    rest = await aws.list_auto_scaling_configurations(
        LatestOnly=False, MaxResults=2, NextToken=page["NextToken"]
    )
    assert len(rest["AutoScalingConfigurationSummaryList"]) == 1 and "NextToken" not in rest
    with pytest.raises(ClientError) as refused:
        await aws.list_auto_scaling_configurations(
            LatestOnly=True, MaxResults=2, NextToken=page["NextToken"]
        )
    assert code_of(refused)[0] == "InvalidRequestException"


async def test_bad_values_are_refused_in_app_runners_words(aws: AppRunnerClient) -> None:
    with pytest.raises(ClientError) as refused:
        await aws.create_auto_scaling_configuration(
            AutoScalingConfigurationName="scaling", MaxConcurrency=201
        )
    code, message = code_of(refused)
    assert code == "InvalidRequestException"
    assert "'maxConcurrency' failed to satisfy constraint" in message
    with pytest.raises(ClientError) as refused:
        await aws.create_auto_scaling_configuration(
            AutoScalingConfigurationName="scaling", MinSize=5, MaxSize=4
        )
    assert code_of(refused)[0] == "InvalidRequestException"
    with pytest.raises(ClientError) as refused:
        await aws.describe_auto_scaling_configuration(
            AutoScalingConfigurationArn=f"{PREFIX}/never-made"
        )
    assert code_of(refused)[0] == "ResourceNotFoundException"
    listed = await aws.list_auto_scaling_configurations(LatestOnly=False)
    names = [
        s["AutoScalingConfigurationName"] for s in listed["AutoScalingConfigurationSummaryList"]
    ]
    assert names == ["DefaultConfiguration"]


async def test_delete_one_revision_or_all_and_the_default(aws: AppRunnerClient) -> None:
    for _ in range(3):
        made = await aws.create_auto_scaling_configuration(
            AutoScalingConfigurationName="scaling", Tags=[{"Key": "a", "Value": "b"}]
        )
    arn = made["AutoScalingConfiguration"]["AutoScalingConfigurationArn"]
    deleted = (await aws.delete_auto_scaling_configuration(AutoScalingConfigurationArn=arn))[
        "AutoScalingConfiguration"
    ]
    assert deleted["Status"] == "inactive" and "DeletedAt" in deleted
    again = (await aws.describe_auto_scaling_configuration(AutoScalingConfigurationArn=arn))[
        "AutoScalingConfiguration"
    ]
    assert again["Status"] == "inactive"
    with pytest.raises(ClientError) as refused:
        await aws.list_tags_for_resource(ResourceArn=arn)
    assert code_of(refused)[0] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as refused:
        await aws.delete_auto_scaling_configuration(AutoScalingConfigurationArn=arn)
    assert code_of(refused) == (
        "InvalidRequestException",
        f"The auto scaling configuration you specified has been deleted. ARN: {arn}",
    )
    await aws.delete_auto_scaling_configuration(
        AutoScalingConfigurationArn=f"{PREFIX}/scaling", DeleteAllRevisions=True
    )
    listed = await aws.list_auto_scaling_configurations(AutoScalingConfigurationName="scaling")
    assert listed["AutoScalingConfigurationSummaryList"] == []

    [default] = (await aws.list_auto_scaling_configurations())[
        "AutoScalingConfigurationSummaryList"
    ]
    assert (
        default["IsDefault"] and default["AutoScalingConfigurationName"] == "DefaultConfiguration"
    )
    with pytest.raises(ClientError) as refused:
        await aws.delete_auto_scaling_configuration(
            AutoScalingConfigurationArn=default["AutoScalingConfigurationArn"]
        )
    code, message = code_of(refused)
    assert code == "InvalidRequestException" and "reserved" in message
    mine = await aws.create_auto_scaling_configuration(AutoScalingConfigurationName="mine")
    moved = (
        await aws.update_default_auto_scaling_configuration(
            AutoScalingConfigurationArn=f"{PREFIX}/mine"
        )
    )["AutoScalingConfiguration"]
    assert moved["IsDefault"]
    assert (
        moved["AutoScalingConfigurationArn"]
        == mine["AutoScalingConfiguration"]["AutoScalingConfigurationArn"]
    )
    summaries = (await aws.list_auto_scaling_configurations())[
        "AutoScalingConfigurationSummaryList"
    ]
    assert [s["IsDefault"] for s in summaries] == [False, True]


async def test_services_use_configurations(harness: Harness, aws: AppRunnerClient) -> None:
    scaling = (await aws.create_auto_scaling_configuration(AutoScalingConfigurationName="scaling"))[
        "AutoScalingConfiguration"
    ]
    tracing = (
        await aws.create_observability_configuration(
            ObservabilityConfigurationName="tracing", TraceConfiguration={"Vendor": "AWSXRAY"}
        )
    )["ObservabilityConfiguration"]
    created = await aws.create_service(
        ServiceName="scaled-web",
        SourceConfiguration=IMAGE_SOURCE,
        AutoScalingConfigurationArn=f"{PREFIX}/scaling",
        ObservabilityConfiguration={
            "ObservabilityEnabled": True,
            "ObservabilityConfigurationArn": tracing["ObservabilityConfigurationArn"],
        },
    )
    service = created["Service"]
    summary = service["AutoScalingConfigurationSummary"]
    assert summary["AutoScalingConfigurationArn"] == scaling["AutoScalingConfigurationArn"]
    assert (summary["AutoScalingConfigurationName"], summary["HasAssociatedService"]) == (
        "scaling",
        True,
    )
    assert service["ObservabilityConfiguration"] == {
        "ObservabilityEnabled": True,
        "ObservabilityConfigurationArn": tracing["ObservabilityConfigurationArn"],
    }
    await harness.wait(created["OperationId"])
    arn = service["ServiceArn"]
    using = await aws.list_services_for_auto_scaling_configuration(
        AutoScalingConfigurationArn=scaling["AutoScalingConfigurationArn"]
    )
    assert using["ServiceArnList"] == [arn]
    with pytest.raises(ClientError) as refused:
        await aws.delete_auto_scaling_configuration(
            AutoScalingConfigurationArn=scaling["AutoScalingConfigurationArn"]
        )
    code, message = code_of(refused)
    assert code == "InvalidRequestException" and "used by one or more services" in message
    with pytest.raises(ClientError) as refused:
        await aws.delete_observability_configuration(
            ObservabilityConfigurationArn=tracing["ObservabilityConfigurationArn"]
        )
    assert code_of(refused)[0] == "InvalidRequestException"

    # Back to the default, tracing off.
    [default] = (
        await aws.list_auto_scaling_configurations(
            AutoScalingConfigurationName="DefaultConfiguration"
        )
    )["AutoScalingConfigurationSummaryList"]
    updated = await aws.update_service(
        ServiceArn=arn,
        AutoScalingConfigurationArn=default["AutoScalingConfigurationArn"],
        ObservabilityConfiguration={"ObservabilityEnabled": False},
    )
    assert (
        updated["Service"]["AutoScalingConfigurationSummary"]["AutoScalingConfigurationArn"]
        == default["AutoScalingConfigurationArn"]
    )
    assert "ObservabilityConfiguration" not in updated["Service"]
    await harness.wait(updated["OperationId"])
    await aws.delete_auto_scaling_configuration(
        AutoScalingConfigurationArn=scaling["AutoScalingConfigurationArn"]
    )
    await aws.delete_observability_configuration(
        ObservabilityConfigurationArn=tracing["ObservabilityConfigurationArn"]
    )
    with pytest.raises(ClientError) as refused:
        await aws.update_service(
            ServiceArn=arn, AutoScalingConfigurationArn=scaling["AutoScalingConfigurationArn"]
        )
    assert code_of(refused)[0] == "InvalidRequestException"


async def test_observability_configurations(aws: AppRunnerClient) -> None:
    plain = (
        await aws.create_observability_configuration(ObservabilityConfigurationName="tracing")
    )["ObservabilityConfiguration"]
    traced = (
        await aws.create_observability_configuration(
            ObservabilityConfigurationName="tracing",
            TraceConfiguration={"Vendor": "AWSXRAY"},
            Tags=[{"Key": "team", "Value": "web"}],
        )
    )["ObservabilityConfiguration"]
    assert "TraceConfiguration" not in plain
    assert traced["TraceConfiguration"] == {"Vendor": "AWSXRAY"}
    assert (traced["ObservabilityConfigurationRevision"], traced["Latest"]) == (2, True)
    assert traced["ObservabilityConfigurationArn"].startswith(f"{OBS_PREFIX}/tracing/2/")
    with pytest.raises(ClientError) as refused:
        await aws.create_observability_configuration(
            ObservabilityConfigurationName="DefaultConfiguration"
        )
    assert code_of(refused)[0] == "InvalidRequestException"
    with pytest.raises(ClientError) as refused:
        await aws.create_observability_configuration(
            ObservabilityConfigurationName="tracing", TraceConfiguration={"Vendor": "JAEGER"}
        )
    assert "enum value set: [AWSXRAY]" in code_of(refused)[1]
    listed = await aws.list_observability_configurations(LatestOnly=False)
    assert [
        s["ObservabilityConfigurationRevision"]
        for s in listed["ObservabilityConfigurationSummaryList"]
    ] == [1, 2]
    described = await aws.describe_observability_configuration(
        ObservabilityConfigurationArn=f"{OBS_PREFIX}/tracing"
    )
    assert described["ObservabilityConfiguration"] == traced
    deleted = (
        await aws.delete_observability_configuration(
            ObservabilityConfigurationArn=traced["ObservabilityConfigurationArn"]
        )
    )["ObservabilityConfiguration"]
    assert deleted["Status"] == "INACTIVE" and "DeletedAt" in deleted
    [left] = (await aws.list_observability_configurations())[
        "ObservabilityConfigurationSummaryList"
    ]
    assert left["ObservabilityConfigurationArn"] == plain["ObservabilityConfigurationArn"]


async def test_another_account_sees_nothing(harness: Harness, recorder: Recorder) -> None:
    mine = AppRunnerClient(harness.aws_port, recorder, harness.aws_credentials())
    theirs = AppRunnerClient(harness.aws_port, recorder, harness.aws_credentials(OTHER_ACCOUNT))
    made = (await mine.create_auto_scaling_configuration(AutoScalingConfigurationName="mine"))[
        "AutoScalingConfiguration"
    ]
    arn = made["AutoScalingConfigurationArn"]
    for call in (
        theirs.describe_auto_scaling_configuration(AutoScalingConfigurationArn=arn),
        theirs.delete_auto_scaling_configuration(AutoScalingConfigurationArn=arn),
        theirs.update_default_auto_scaling_configuration(AutoScalingConfigurationArn=arn),
        theirs.list_services_for_auto_scaling_configuration(AutoScalingConfigurationArn=arn),
        theirs.list_tags_for_resource(ResourceArn=arn),
    ):
        with pytest.raises(ClientError) as refused:
            await call
        assert code_of(refused)[0] == "ResourceNotFoundException"
    listed = await theirs.list_auto_scaling_configurations(LatestOnly=False)
    assert [
        s["AutoScalingConfigurationName"] for s in listed["AutoScalingConfigurationSummaryList"]
    ] == ["DefaultConfiguration"]
    with pytest.raises(ClientError) as refused:
        await theirs.create_service(
            ServiceName="their-web",
            SourceConfiguration=IMAGE_SOURCE,
            AutoScalingConfigurationArn=arn,
        )
    assert code_of(refused)[0] == "InvalidRequestException"


async def test_a_reader_key_reads_configurations_and_may_not_change_them(
    harness: Harness, recorder: Recorder
) -> None:
    reader = await harness.new_key(role=Role.READER)
    aws = AppRunnerClient(harness.aws_port, recorder, (reader.key.key_id, reader.secret))
    listed = await aws.list_auto_scaling_configurations()
    assert len(listed["AutoScalingConfigurationSummaryList"]) == 1
    await aws.list_observability_configurations()
    for call in (
        aws.create_auto_scaling_configuration(AutoScalingConfigurationName="by-reader"),
        aws.create_observability_configuration(ObservabilityConfigurationName="by-reader"),
        aws.update_default_auto_scaling_configuration(
            AutoScalingConfigurationArn=f"{PREFIX}/x-y-z"
        ),
        aws.delete_auto_scaling_configuration(AutoScalingConfigurationArn=f"{PREFIX}/x-y-z"),
        aws.delete_observability_configuration(ObservabilityConfigurationArn=f"{OBS_PREFIX}/x-y-z"),
    ):
        with pytest.raises(ClientError) as refused:
            await call
        assert code_of(refused)[0] == "AccessDeniedException"


async def test_concurrent_creates_of_one_name_make_distinct_revisions(
    harness: Harness, aws: AppRunnerClient
) -> None:
    made = await asyncio.gather(
        *(
            aws.create_auto_scaling_configuration(AutoScalingConfigurationName="raced")
            for _ in range(5)
        )
    )
    revisions = sorted(
        m["AutoScalingConfiguration"]["AutoScalingConfigurationRevision"] for m in made
    )
    assert revisions == [1, 2, 3, 4, 5]
    with pytest.raises(ClientError) as refused:
        await aws.create_auto_scaling_configuration(AutoScalingConfigurationName="raced")
    assert code_of(refused)[0] == "ServiceQuotaExceededException"


async def test_service_references_are_checked_on_the_wire(aws: AppRunnerClient) -> None:
    with pytest.raises(ClientError) as refused:
        await aws.create_service(
            ServiceName="traced-web",
            SourceConfiguration=IMAGE_SOURCE,
            ObservabilityConfiguration={"ObservabilityEnabled": True},
        )
    code, message = code_of(refused)
    assert code == "InvalidRequestException" and "observabilityConfigurationArn" in message
    with pytest.raises(ClientError) as refused:
        await aws.create_service(
            ServiceName="scaled-web",
            SourceConfiguration=IMAGE_SOURCE,
            AutoScalingConfigurationArn=f"{PREFIX}/never-made",
        )
    assert code_of(refused)[0] == "InvalidRequestException"
    assert (await aws.list_services())["ServiceSummaryList"] == []
