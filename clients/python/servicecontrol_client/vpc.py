"""The VPC connector and VPC ingress connection methods of ServiceControlClient."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from servicecontrol.v1 import service_control_pb2_grpc as api_grpc
from servicecontrol.v1 import vpc_pb2

Resp = TypeVar("Resp")
Item = TypeVar("Item")


class VpcMethods:
    """Mixed into ServiceControlClient, whose plumbing these methods use."""

    if TYPE_CHECKING:
        # ServiceControlClient's plumbing, declared for the type checker only.
        _stub: api_grpc.ServiceControlStub

        def _unary(
            self,
            rpc: Callable[..., Resp],
            request: Any,
            *,
            retryable: bool,
            call_timeout: float | None,
        ) -> Resp: ...

        def _mutation(
            self, rpc: Callable[..., Resp], request: Any, call_timeout: float | None
        ) -> Resp: ...

        def _read(
            self, rpc: Callable[..., Resp], request: Any, call_timeout: float | None
        ) -> Resp: ...

        @staticmethod
        def _request_id(request_id: str | None, validate_only: bool) -> str: ...

        @staticmethod
        def _pages(fetch: Callable[[str], tuple[Sequence[Item], str]]) -> Iterator[Item]: ...

    # ----- VPC connectors -----

    def create_vpc_connector(
        self,
        *,
        vpc_connector_name: str,
        subnets: Sequence[str],
        security_groups: Sequence[str] = (),
        tags: Mapping[str, str] | None = None,
        request_id: str | None = None,
        validate_only: bool = False,
        call_timeout: float | None = None,
    ) -> vpc_pb2.CreateVpcConnectorResponse:
        request = vpc_pb2.CreateVpcConnectorRequest(
            vpc_connector_name=vpc_connector_name,
            subnets=list(subnets),
            security_groups=list(security_groups),
            tags=dict(tags or {}),
            request_id=self._request_id(request_id, validate_only),
            validate_only=validate_only,
        )
        return self._mutation(self._stub.CreateVpcConnector, request, call_timeout)

    def describe_vpc_connector(
        self, vpc_connector_arn: str, *, call_timeout: float | None = None
    ) -> vpc_pb2.DescribeVpcConnectorResponse:
        request = vpc_pb2.DescribeVpcConnectorRequest(vpc_connector_arn=vpc_connector_arn)
        return self._read(self._stub.DescribeVpcConnector, request, call_timeout)

    def list_vpc_connectors(
        self, *, page_size: int = 0, page_token: str = "", call_timeout: float | None = None
    ) -> vpc_pb2.ListVpcConnectorsResponse:
        request = vpc_pb2.ListVpcConnectorsRequest(page_size=page_size, page_token=page_token)
        return self._read(self._stub.ListVpcConnectors, request, call_timeout)

    def delete_vpc_connector(
        self,
        vpc_connector_arn: str,
        *,
        request_id: str | None = None,
        validate_only: bool = False,
        call_timeout: float | None = None,
    ) -> vpc_pb2.DeleteVpcConnectorResponse:
        request = vpc_pb2.DeleteVpcConnectorRequest(
            vpc_connector_arn=vpc_connector_arn,
            request_id=self._request_id(request_id, validate_only),
            validate_only=validate_only,
        )
        return self._mutation(self._stub.DeleteVpcConnector, request, call_timeout)

    def iter_vpc_connectors(self, *, page_size: int = 0) -> Iterator[vpc_pb2.VpcConnector]:
        """Every VPC connector of the account, newest first, INACTIVE ones included."""

        def fetch(token: str) -> tuple[Sequence[vpc_pb2.VpcConnector], str]:
            page = self.list_vpc_connectors(page_size=page_size, page_token=token)
            return page.vpc_connectors, page.next_page_token

        return self._pages(fetch)

    # ----- VPC ingress connections -----

    def create_vpc_ingress_connection(
        self,
        service_arn: str,
        *,
        vpc_ingress_connection_name: str,
        vpc_id: str,
        vpc_endpoint_id: str,
        tags: Mapping[str, str] | None = None,
        request_id: str | None = None,
        validate_only: bool = False,
        call_timeout: float | None = None,
    ) -> vpc_pb2.CreateVpcIngressConnectionResponse:
        request = vpc_pb2.CreateVpcIngressConnectionRequest(
            service_arn=service_arn,
            vpc_ingress_connection_name=vpc_ingress_connection_name,
            ingress_vpc_configuration=vpc_pb2.IngressVpcConfiguration(
                vpc_id=vpc_id, vpc_endpoint_id=vpc_endpoint_id
            ),
            tags=dict(tags or {}),
            request_id=self._request_id(request_id, validate_only),
            validate_only=validate_only,
        )
        return self._mutation(self._stub.CreateVpcIngressConnection, request, call_timeout)

    def describe_vpc_ingress_connection(
        self, vpc_ingress_connection_arn: str, *, call_timeout: float | None = None
    ) -> vpc_pb2.DescribeVpcIngressConnectionResponse:
        request = vpc_pb2.DescribeVpcIngressConnectionRequest(
            vpc_ingress_connection_arn=vpc_ingress_connection_arn
        )
        return self._read(self._stub.DescribeVpcIngressConnection, request, call_timeout)

    def list_vpc_ingress_connections(
        self,
        *,
        service_arn: str = "",
        vpc_endpoint_id: str = "",
        page_size: int = 0,
        page_token: str = "",
        call_timeout: float | None = None,
    ) -> vpc_pb2.ListVpcIngressConnectionsResponse:
        request = vpc_pb2.ListVpcIngressConnectionsRequest(
            service_arn=service_arn,
            vpc_endpoint_id=vpc_endpoint_id,
            page_size=page_size,
            page_token=page_token,
        )
        return self._read(self._stub.ListVpcIngressConnections, request, call_timeout)

    def update_vpc_ingress_connection(
        self,
        vpc_ingress_connection_arn: str,
        *,
        vpc_id: str,
        vpc_endpoint_id: str,
        request_id: str | None = None,
        validate_only: bool = False,
        call_timeout: float | None = None,
    ) -> vpc_pb2.UpdateVpcIngressConnectionResponse:
        request = vpc_pb2.UpdateVpcIngressConnectionRequest(
            vpc_ingress_connection_arn=vpc_ingress_connection_arn,
            ingress_vpc_configuration=vpc_pb2.IngressVpcConfiguration(
                vpc_id=vpc_id, vpc_endpoint_id=vpc_endpoint_id
            ),
            request_id=self._request_id(request_id, validate_only),
            validate_only=validate_only,
        )
        return self._mutation(self._stub.UpdateVpcIngressConnection, request, call_timeout)

    def delete_vpc_ingress_connection(
        self,
        vpc_ingress_connection_arn: str,
        *,
        request_id: str | None = None,
        validate_only: bool = False,
        call_timeout: float | None = None,
    ) -> vpc_pb2.DeleteVpcIngressConnectionResponse:
        request = vpc_pb2.DeleteVpcIngressConnectionRequest(
            vpc_ingress_connection_arn=vpc_ingress_connection_arn,
            request_id=self._request_id(request_id, validate_only),
            validate_only=validate_only,
        )
        return self._mutation(self._stub.DeleteVpcIngressConnection, request, call_timeout)

    def iter_vpc_ingress_connections(
        self, *, service_arn: str = "", vpc_endpoint_id: str = "", page_size: int = 0
    ) -> Iterator[vpc_pb2.VpcIngressConnection]:
        def fetch(token: str) -> tuple[Sequence[vpc_pb2.VpcIngressConnection], str]:
            page = self.list_vpc_ingress_connections(
                service_arn=service_arn,
                vpc_endpoint_id=vpc_endpoint_id,
                page_size=page_size,
                page_token=token,
            )
            return page.vpc_ingress_connections, page.next_page_token

        return self._pages(fetch)
