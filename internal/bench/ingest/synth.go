package ingest

import (
	"strconv"
	"time"
)

// synth makes the benchmark's Management Activity records: an Exchange
// MailItemsAccessed record (the shape of the public captures of
// Audit.Exchange, Microsoft Learn "Office 365 Management Activity API schema",
// ExchangeMailboxAuditRecord) with a distinct Id and message id per record,
// appended without allocating so that the emulator can generate blobs of
// tens of thousands of records on every read.
type synth struct {
	head, mid, tail []byte
}

func newSynth(tenant string, created time.Time) *synth {
	s := &synth{}
	s.head = []byte(`{"CreationTime":"` + created.UTC().Format("2006-01-02T15:04:05") + `","Id":"`)
	s.mid = []byte(`","Operation":"MailItemsAccessed","OrganizationId":"` + tenant + `","RecordType":50,"ResultStatus":"Succeeded","UserKey":"10032002F222981B","UserType":0,"Version":1,"Workload":"Exchange","ClientIP":"185.73.124.135:19823","UserId":"alice@contoso.com","ClientInfoString":"Client=OWA;Mozilla/5.0 (Windows NT 10.0; Win64; x64)","ExternalAccess":false,"LogonType":0,"MailboxOwnerUPN":"alice@contoso.com","OperationProperties":[{"Name":"MailAccessType","Value":"Bind"},{"Name":"IsThrottled","Value":"False"}],"Folders":[{"FolderItems":[{"InternetMessageId":"<m`)
	s.tail = []byte(`@contoso.com>","SizeInBytes":51234}],"Path":"\\Inbox"}]}`)
	return s
}

func appendHex(dst []byte, v uint64, width int) []byte {
	const hex = "0123456789abcdef"
	for k := width - 1; k >= 0; k-- {
		dst = append(dst, hex[(v>>(4*uint(k)))&0xf])
	}
	return dst
}

// appendID appends the Id (a GUID) of record i of blob b.
func appendID(dst []byte, b, i int) []byte {
	dst = appendHex(dst, uint64(b), 8)
	dst = append(dst, "-0000-4000-8000-"...)
	return appendHex(dst, uint64(i), 12)
}

// record appends record i of blob b to dst.
func (s *synth) record(dst []byte, b, i int) []byte {
	dst = append(dst, s.head...)
	dst = appendID(dst, b, i)
	dst = append(dst, s.mid...)
	dst = strconv.AppendInt(dst, int64(b), 10)
	dst = append(dst, '.')
	dst = strconv.AppendInt(dst, int64(i), 10)
	return append(dst, s.tail...)
}

// blob returns the generator of blob b (for m365sim.AddGeneratedAuditBlob).
func (s *synth) blob(b int) func(dst []byte, i int) []byte {
	return func(dst []byte, i int) []byte { return s.record(dst, b, i) }
}
