package fsm

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"

	"github.com/hashicorp/raft"
)

// The snapshot stream: a magic header, then records of
// [kind byte][uvarint length][body] in a fixed order (meta, members,
// tasks, nodes, workspaces, idempotency keys, errors, node event logs,
// task messages; each sorted by key),
// then a trailer of [kindEnd][uint64 record count][uint32 CRC-32C of
// everything before the CRC]. Sorted order makes two replicas with the same
// state write the same bytes; the CRC turns a truncated or corrupt file into
// a clear error instead of a half-restored state.
//
// Format 2 (written): task, workspace, idempotency-key and message bodies
// are binary (taskcodec.go, messages.go), the rest JSON. Format 1 (still
// read, for snapshots taken before the upgrade): every body is JSON. Node
// event logs and task messages were added to format 2 later: a snapshot
// without them is one taken before, and a binary from before them refuses
// a snapshot that holds them (unknown record kind).
const (
	snapshotMagic   = "TDFSNAP2"
	snapshotMagicV1 = "TDFSNAP1"
)

type recordKind byte

const (
	kindMeta      recordKind = 1
	kindMember    recordKind = 2
	kindTask      recordKind = 3
	kindNode      recordKind = 4
	kindWorkspace recordKind = 5
	kindIdem      recordKind = 6
	kindError     recordKind = 7
	kindNodeLog   recordKind = 8
	kindMessages  recordKind = 9
	kindEnd       recordKind = 0xFF
)

// maxRecordLen bounds one record so a corrupt length cannot ask for
// gigabytes of memory.
const maxRecordLen = 64 << 20

// ErrCorruptSnapshot wraps every snapshot decoding failure.
var ErrCorruptSnapshot = errors.New("fsm: corrupt snapshot")

var crcTable = crc32.MakeTable(crc32.Castagnoli)

type snapshotMeta struct {
	Version  int          `json:"version"`
	Index    uint64       `json:"index"`
	ErrSeq   uint64       `json:"err_seq"`
	Rejected uint64       `json:"rejected"`
	Settings Settings     `json:"settings"`
	Keys     []SigningKey `json:"keys,omitempty"`
	// ControlPlaneURL is absent from snapshots taken before the setting.
	ControlPlaneURL string `json:"control_plane_url,omitempty"`
	// Credentials are sealed (credentials.go); absent from older snapshots.
	Credentials []*Credential `json:"credentials,omitempty"`
	// APITokens hold hashes only (apitokens.go).
	APITokens []*APIToken `json:"api_tokens,omitempty"`
	// ClusterID is absent from snapshots taken before the cluster id.
	ClusterID string `json:"cluster_id,omitempty"`
}

// snapshot is a point-in-time view: cloned trees share nodes with the live
// state until Apply writes, so taking it is O(1) and Persist runs while
// Apply goes on.
type snapshot struct{ st *state }

// Snapshot implements raft.FSM.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &snapshot{st: f.st.clone()}, nil
}

// Persist implements raft.FSMSnapshot.
func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.st.writeTo(sink); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

// Release implements raft.FSMSnapshot.
func (s *snapshot) Release() {}

// WriteSnapshot writes the current state in snapshot format to w.
func (f *FSM) WriteSnapshot(w io.Writer) error {
	f.mu.Lock()
	st := f.st.clone()
	f.mu.Unlock()
	return st.writeTo(w)
}

// Hash is the SHA-256 of the state's snapshot encoding, and the applied
// index it was taken at: two replicas at one index have equal hashes
// exactly when their states are equal.
func (f *FSM) Hash() (index uint64, sum string, err error) {
	f.mu.Lock()
	st := f.st.clone()
	f.mu.Unlock()
	h := sha256.New()
	if err := st.writeTo(h); err != nil {
		return 0, "", err
	}
	return st.index, hex.EncodeToString(h.Sum(nil)), nil
}

type snapshotWriter struct {
	w     *bufio.Writer
	crc   hash.Hash32
	count uint64
	err   error
	lenb  [binary.MaxVarintLen64]byte
	// body and scratch are reused for every binary record.
	body, scratch encoder
}

func (sw *snapshotWriter) write(p []byte) {
	if sw.err != nil {
		return
	}
	sw.crc.Write(p)
	_, sw.err = sw.w.Write(p)
}

func (sw *snapshotWriter) frame(kind recordKind, body []byte) bool {
	sw.write([]byte{byte(kind)})
	sw.write(sw.lenb[:binary.PutUvarint(sw.lenb[:], uint64(len(body)))])
	sw.write(body)
	sw.count++
	return sw.err == nil
}

// record writes a JSON record.
func (sw *snapshotWriter) record(kind recordKind, v any) bool {
	if sw.err != nil {
		return false
	}
	body, err := json.Marshal(v)
	if err != nil {
		sw.err = fmt.Errorf("fsm: snapshot encode: %w", err)
		return false
	}
	return sw.frame(kind, body)
}

// binary writes a binary record that enc appends to the body encoder.
func (sw *snapshotWriter) binary(kind recordKind, enc func(e *encoder)) bool {
	if sw.err != nil {
		return false
	}
	sw.body.b = sw.body.b[:0]
	enc(&sw.body)
	return sw.frame(kind, sw.body.b)
}

func (s *state) writeTo(w io.Writer) error {
	sw := &snapshotWriter{w: bufio.NewWriterSize(w, 256<<10), crc: crc32.New(crcTable)}
	sw.write([]byte(snapshotMagic))
	sw.record(kindMeta, snapshotMeta{Version: 2, Index: s.index, ErrSeq: s.errSeq, Rejected: s.rejected, Settings: s.settings, Keys: s.keys, ControlPlaneURL: s.controlURL,
		Credentials: s.credentialList(), APITokens: s.apiTokens, ClusterID: s.clusterID})
	s.members.Ascend(func(m Member) bool { return sw.record(kindMember, m) })
	s.tasks.Ascend(func(t *Task) bool { return sw.binary(kindTask, func(e *encoder) { e.task(t, &sw.scratch) }) })
	s.nodes.Ascend(func(n *Node) bool { return sw.record(kindNode, n) })
	s.workspaces.Ascend(func(ws *Workspace) bool { return sw.binary(kindWorkspace, func(e *encoder) { e.workspace(ws) }) })
	s.idem.Ascend(func(x *idemEntry) bool { return sw.binary(kindIdem, func(e *encoder) { e.idem(x) }) })
	s.errors.Ascend(func(e *ErrorRecord) bool { return sw.record(kindError, e) })
	s.nodeEvents.Ascend(func(l *nodeEventLog) bool { return sw.record(kindNodeLog, l) })
	s.messages.Ascend(func(tm *TaskMessages) bool { return sw.binary(kindMessages, func(e *encoder) { e.messages(tm) }) })
	var trailer [13]byte
	trailer[0] = byte(kindEnd)
	binary.BigEndian.PutUint64(trailer[1:9], sw.count)
	sw.write(trailer[:9])
	binary.BigEndian.PutUint32(trailer[9:], sw.crc.Sum32())
	if sw.err == nil {
		_, sw.err = sw.w.Write(trailer[9:])
	}
	if sw.err != nil {
		return sw.err
	}
	return sw.w.Flush()
}

// Restore implements raft.FSM: it replaces the whole state with the
// snapshot's. On any error the current state is left untouched.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	st, err := readState(rc)
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.st = st
	f.mu.Unlock()
	return nil
}

// crcReader checksums every byte it hands out.
type crcReader struct {
	r   *bufio.Reader
	crc hash.Hash32
}

func (c *crcReader) ReadByte() (byte, error) {
	b, err := c.r.ReadByte()
	if err == nil {
		c.crc.Write([]byte{b})
	}
	return b, err
}

func (c *crcReader) readFull(p []byte) error {
	if _, err := io.ReadFull(c.r, p); err != nil {
		return err
	}
	c.crc.Write(p)
	return nil
}

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorruptSnapshot, fmt.Sprintf(format, args...))
}

func readState(r io.Reader) (*state, error) {
	cr := &crcReader{r: bufio.NewReaderSize(r, 256<<10), crc: crc32.New(crcTable)}
	magic := make([]byte, len(snapshotMagic))
	if err := cr.readFull(magic); err != nil || (string(magic) != snapshotMagic && string(magic) != snapshotMagicV1) {
		return nil, corrupt("bad header")
	}
	st := newState()
	load := st.load
	if string(magic) == snapshotMagicV1 {
		load = st.loadJSON
	}
	var count uint64
	buf := make([]byte, 0, 4096)
	for {
		kb, err := cr.ReadByte()
		if err != nil {
			return nil, corrupt("truncated after %d records", count)
		}
		if recordKind(kb) == kindEnd {
			return st, readTrailer(cr, count)
		}
		n, err := binary.ReadUvarint(cr)
		if err != nil || n > maxRecordLen {
			return nil, corrupt("bad record length after %d records", count)
		}
		if uint64(cap(buf)) < n {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if err := cr.readFull(buf); err != nil {
			return nil, corrupt("truncated record %d", count)
		}
		if err := load(recordKind(kb), buf); err != nil {
			return nil, corrupt("record %d: %v", count, err)
		}
		count++
	}
}

func readTrailer(cr *crcReader, count uint64) error {
	var cnt [8]byte
	if err := cr.readFull(cnt[:]); err != nil {
		return corrupt("truncated trailer")
	}
	want := cr.crc.Sum32()
	var sum [4]byte
	if _, err := io.ReadFull(cr.r, sum[:]); err != nil {
		return corrupt("truncated checksum")
	}
	if got := binary.BigEndian.Uint64(cnt[:]); got != count {
		return corrupt("trailer counts %d records, read %d", got, count)
	}
	if got := binary.BigEndian.Uint32(sum[:]); got != want {
		return corrupt("checksum %08x, computed %08x", got, want)
	}
	return nil
}

// load decodes one record of format 2 into the state. A binary record is
// decoded from its own copy, which its strings and packed timeline alias.
func (s *state) load(kind recordKind, body []byte) error {
	d := &decoder{b: body}
	if kind == kindTask || kind == kindWorkspace || kind == kindIdem || kind == kindMessages {
		d.b, d.alias = append([]byte(nil), body...), true
	}
	switch kind {
	case kindTask:
		t, err := d.task()
		if err != nil {
			return err
		}
		s.tasks.ReplaceOrInsert(t)
		s.indexTask(t)
	case kindWorkspace:
		w, err := d.workspace()
		if err != nil {
			return err
		}
		s.putWorkspace(w)
	case kindIdem:
		x, err := d.idem()
		if err != nil {
			return err
		}
		s.putIdem(x)
	case kindMessages:
		tm, err := d.messages()
		if err != nil {
			return err
		}
		s.messages.ReplaceOrInsert(tm)
	default:
		return s.loadJSON(kind, body)
	}
	return nil
}

// loadJSON decodes one JSON record (all of format 1; meta, members, nodes
// and errors of format 2).
func (s *state) loadJSON(kind recordKind, body []byte) error {
	switch kind {
	case kindMeta:
		var m snapshotMeta
		if err := json.Unmarshal(body, &m); err != nil {
			return err
		}
		if m.Version != 1 && m.Version != 2 {
			return fmt.Errorf("snapshot version %d is unknown", m.Version)
		}
		s.index, s.errSeq, s.rejected, s.settings, s.keys = m.Index, m.ErrSeq, m.Rejected, m.Settings, m.Keys
		s.controlURL, s.clusterID = m.ControlPlaneURL, m.ClusterID
		if err := s.loadCredentials(m.Credentials); err != nil {
			return err
		}
		if err := s.loadAPITokens(m.APITokens); err != nil {
			return err
		}
	case kindMember:
		var m Member
		if err := json.Unmarshal(body, &m); err != nil {
			return err
		}
		s.members.ReplaceOrInsert(m)
	case kindTask:
		t := new(Task)
		if err := json.Unmarshal(body, t); err != nil {
			return err
		}
		if t.dormant() {
			t = t.packed()
		}
		s.tasks.ReplaceOrInsert(t)
		s.indexTask(t)
	case kindNode:
		n := new(Node)
		if err := json.Unmarshal(body, n); err != nil {
			return err
		}
		s.nodes.ReplaceOrInsert(n)
		s.indexNode(n)
	case kindWorkspace:
		w := new(Workspace)
		if err := json.Unmarshal(body, w); err != nil {
			return err
		}
		s.putWorkspace(w)
	case kindIdem:
		x := new(idemEntry)
		if err := json.Unmarshal(body, x); err != nil {
			return err
		}
		s.putIdem(x)
	case kindError:
		e := new(ErrorRecord)
		if err := json.Unmarshal(body, e); err != nil {
			return err
		}
		s.errors.ReplaceOrInsert(e)
	case kindNodeLog:
		l := new(nodeEventLog)
		if err := json.Unmarshal(body, l); err != nil {
			return err
		}
		s.nodeEvents.ReplaceOrInsert(l)
	default:
		return fmt.Errorf("unknown record kind %d", kind)
	}
	return nil
}

func (s *state) putWorkspace(w *Workspace) {
	s.workspaces.ReplaceOrInsert(w)
	s.indexWorkspace(w)
}

func (s *state) putIdem(x *idemEntry) {
	s.idem.ReplaceOrInsert(x)
	s.idemByTime.ReplaceOrInsert(x)
}
