// Package notify turns the object-created notifications that an external
// store sends into Sluice's event.ObjectCreated, so that an object that
// lands in S3, MinIO, versitygw or R2 starts the same job as an upload
// through Sluice's own ingest.
//
// Two message formats are decoded:
//
//   - DecodeS3: the S3 event notification, {"Records":[...]}, as AWS S3
//     (eventSource "aws:s3", eventName without the "s3:" prefix), MinIO
//     ("minio:s3", "s3:ObjectCreated:Put") and versitygw (its
//     --event-webhook-url, --event-nats-url and Kafka senders) send it.
//     AWS and MinIO URL-encode the object key (a space becomes '+');
//     versitygw sends it as it is: decode its messages with
//     S3Decoder{RawKeys: true}.
//   - DecodeR2: the body of an R2 event notification message, which R2
//     puts on a Cloudflare Queue.
//
// Both skip what is not a new object (deletions, tagging, restores) and
// reject malformed input with errors that wrap ErrMalformed. The events
// they return carry no AssetID: mapping a key to its asset is the
// caller's business.
//
// Puller consumes a Cloudflare Queue over HTTP (a "pull consumer"), so
// that R2 notifications reach a Sluice running anywhere: it pulls
// batches, hands each message to a handler, then acknowledges the
// messages handled and marks the failed ones for retry with a delay. A
// message that can never be handled (ErrPoison) is acknowledged and
// logged, so that it does not loop until the queue's retry limit.
//
// Formats and API, as documented:
//
//   - S3: https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html
//   - MinIO: cmd/event-notification.go in github.com/minio/minio
//     (eventArgs.ToEvent: url.QueryEscape of the key; size and eTag
//     omitted when empty)
//   - versitygw: s3event/event.go in github.com/versity/versitygw (the
//     key comes from the request path, which
//     s3api/middlewares/url-decoder.go has already unescaped; older
//     releases sent a bare JSON array of records)
//   - R2: https://developers.cloudflare.com/r2/buckets/event-notifications/#message-format
//   - Queues pull consumers: https://developers.cloudflare.com/queues/configuration/pull-consumers/
//   - Queues REST API: https://developers.cloudflare.com/api/operations/queue-v2-messages-pull
//     and https://developers.cloudflare.com/api/operations/queue-v2-messages-ack
//     (the request takes visibility_timeout_ms, where the guide's
//     examples say visibility_timeout; queues/message.go in
//     github.com/cloudflare/cloudflare-go, generated from the API's
//     OpenAPI schema, agrees)
package notify
