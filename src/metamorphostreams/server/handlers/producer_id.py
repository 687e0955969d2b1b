"""InitProducerId for idempotent producers (transactions come with the transaction coordinator)."""

from __future__ import annotations

from ...protocol._generated.init_producer_id import InitProducerIdRequest, InitProducerIdResponse
from ...protocol.errors import ErrorCode
from ..dispatch import RequestContext


async def handle_init_producer_id(
    ctx: RequestContext, req: InitProducerIdRequest
) -> InitProducerIdResponse:
    if req.transactional_id is not None:
        # No transaction coordinator yet: say so instead of handing out an id that cannot work.
        return InitProducerIdResponse(error_code=ErrorCode.UNSUPPORTED_VERSION)
    # Without a transactional id Kafka always hands out a fresh producer id at epoch 0, also
    # when the client passes its old id and epoch (KIP-360 epoch bump for idempotent producers).
    pid = ctx.broker.metadata.allocate_producer_id()
    return InitProducerIdResponse(error_code=ErrorCode.NONE, producer_id=pid, producer_epoch=0)
