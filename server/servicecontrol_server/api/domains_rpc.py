"""The custom domain and certificate RPCs, mixed into ServiceControlServicer."""

from __future__ import annotations

from collections.abc import Callable

import grpc

from servicecontrol.v1 import service_control_pb2 as api

from ..application.domain_commands import DomainCommands
from . import convert
from .errors import translated


class DomainsRpc:
    domains: DomainCommands
    account: Callable[[grpc.aio.ServicerContext], str]

    @translated
    async def AssociateCustomDomain(
        self, request: api.AssociateCustomDomainRequest, context: grpc.aio.ServicerContext
    ) -> api.AssociateCustomDomainResponse:
        result = await self.domains.associate(
            self.account(context),
            request.service_arn,
            request.domain_name,
            request.enable_www_subdomain if request.HasField("enable_www_subdomain") else None,
            request.request_id,
            request.validate_only,
        )
        return api.AssociateCustomDomainResponse(
            dns_target=result.dns_target,
            service_arn=result.service_arn,
            custom_domain=convert.custom_domain(result.custom_domain),
        )

    @translated
    async def DisassociateCustomDomain(
        self, request: api.DisassociateCustomDomainRequest, context: grpc.aio.ServicerContext
    ) -> api.DisassociateCustomDomainResponse:
        result = await self.domains.disassociate(
            self.account(context),
            request.service_arn,
            request.domain_name,
            request.request_id,
            request.validate_only,
        )
        return api.DisassociateCustomDomainResponse(
            dns_target=result.dns_target,
            service_arn=result.service_arn,
            custom_domain=convert.custom_domain(result.custom_domain),
        )

    @translated
    async def DescribeCustomDomains(
        self, request: api.DescribeCustomDomainsRequest, context: grpc.aio.ServicerContext
    ) -> api.DescribeCustomDomainsResponse:
        target, page = await self.domains.describe(
            self.account(context), request.service_arn, request.page_size, request.page_token
        )
        return api.DescribeCustomDomainsResponse(
            dns_target=target.dns_target,
            service_arn=target.service_arn,
            custom_domains=[convert.custom_domain(d) for d in page.items],
            next_page_token=page.next_page_token,
        )

    @translated
    async def ListCertificates(
        self, request: api.ListCertificatesRequest, context: grpc.aio.ServicerContext
    ) -> api.ListCertificatesResponse:
        page = await self.domains.list_certificates(
            self.account(context), request.domain_name, request.page_size, request.page_token
        )
        return api.ListCertificatesResponse(
            certificates=[convert.certificate(c) for c in page.items],
            next_page_token=page.next_page_token,
        )
