"""InitProducerId: idempotent producers here, transactional ones at the transaction coordinator."""

from __future__ import annotations

from ...protocol._generated.init_producer_id import InitProducerIdRequest, InitProducerIdResponse
from ...protocol.errors import ErrorCode
from ...protocol.record_batch import NO_PRODUCER_EPOCH, NO_PRODUCER_ID
from ..dispatch import RequestContext


async def handle_init_producer_id(
    ctx: RequestContext, req: InitProducerIdRequest
) -> InitProducerIdResponse:
    if req.transactional_id is not None:
        cluster = ctx.broker.cluster
        if cluster is not None and not cluster.coordinates_transaction(req.transactional_id):
            return InitProducerIdResponse(
                error_code=ErrorCode.NOT_COORDINATOR, producer_id=-1, producer_epoch=-1
            )
        runtime = ctx.broker.transactions
        response: InitProducerIdResponse = await runtime.call(
            runtime.coordinator.init_producer_id, req, ctx.api_version
        )
        return response
    if (req.producer_id == NO_PRODUCER_ID) != (req.producer_epoch == NO_PRODUCER_EPOCH):
        # Kafka's InitProducerId check: an id and an epoch come together, or neither.
        return InitProducerIdResponse(
            error_code=ErrorCode.INVALID_REQUEST, producer_id=-1, producer_epoch=-1
        )
    # Without a transactional id Kafka always hands out a fresh producer id at epoch 0, also
    # when the client passes its old id and epoch (KIP-360 epoch bump for idempotent producers).
    pid = ctx.broker.metadata.allocate_producer_id()
    return InitProducerIdResponse(error_code=ErrorCode.NONE, producer_id=pid, producer_epoch=0)
