package bus

import (
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// StreamAuditIndex holds the audit trail's secondary index (internal/auditindex):
// small chunks of AUDIT stream sequences, one subject per filter dimension,
// value and sequence bucket, so that a filtered page of the trail reads only the
// chunks of the values it asks for and then the records they point at, never
// the whole AUDIT stream.
const StreamAuditIndex = "AUDIT_INDEX"

// AuditIndexChunkSubject is responder.<tenant>.auditidx.k.<dim>.<key>.<bucket>:
// the chunks of one dimension's value (key: a fixed-length hash of the value,
// computed by auditindex) for the AUDIT sequences in one bucket.
func AuditIndexChunkSubject(tenant, dim, key string, bucket uint64) string {
	return auditIndexKey(tenant, dim, key) + "." + strconv.FormatUint(bucket, 10)
}

// AuditIndexKeyFilter matches every bucket of one dimension's value.
func AuditIndexKeyFilter(tenant, dim, key string) string {
	return auditIndexKey(tenant, dim, key) + ".*"
}

func auditIndexKey(tenant, dim, key string) string {
	return "responder." + Token(tenant) + ".auditidx.k." + Token(dim) + "." + Token(key)
}

// AuditIndexMarkSubject carries the AUDIT sequence up to which the index is
// complete (the body of its last message).
func AuditIndexMarkSubject(tenant string) string {
	return "responder." + Token(tenant) + ".auditidx.mark"
}

// AuditIndexStreamConfig is the index stream's configuration: kept as long
// as the audit trail it points into (maxAge), read with direct gets.
func AuditIndexStreamConfig(maxAge time.Duration, replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        StreamAuditIndex,
		Description: "secondary index of the AUDIT stream: sequence chunks per filter value (rebuildable)",
		Subjects:    []string{"responder.*.auditidx.>"},
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      maxAge,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		AllowDirect: true,
		Duplicates:  2 * time.Minute,
	}
}

// AuditIndexSpanSubject carries the record times (earliest, latest) of one
// bucket of AUDIT sequences: its last message is the bucket's span.
func AuditIndexSpanSubject(tenant string, bucket uint64) string {
	return "responder." + Token(tenant) + ".auditidx.span." + strconv.FormatUint(bucket, 10)
}

// AuditIndexSpanFilter matches every bucket's span.
func AuditIndexSpanFilter(tenant string) string {
	return "responder." + Token(tenant) + ".auditidx.span.*"
}
