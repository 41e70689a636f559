//! Producing test, demo and bench input: one record queued on a producer,
//! waiting while the client queue is full (the producer's backpressure).

use std::time::Duration;

use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::ToBytes;
use rdkafka::producer::{BaseProducer, BaseRecord};
use rdkafka::types::RDKafkaErrorCode;

/// Queues `record` on `producer`; while the client queue is full it serves
/// delivery reports and tries again.
///
/// # Errors
///
/// Any error other than a full queue (a record too large, an unknown
/// topic, …): retrying would never end.
pub fn send_retrying<K, P>(
    producer: &BaseProducer,
    mut record: BaseRecord<'_, K, P>,
) -> KafkaResult<()>
where
    K: ToBytes + ?Sized,
    P: ToBytes + ?Sized,
{
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                producer.poll(Duration::from_millis(5));
            }
            Err((e, _)) => return Err(e),
        }
    }
}
