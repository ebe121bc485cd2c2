package fsm

import (
	"encoding/binary"
	"fmt"
)

// CmdBatch carries several commands in one raft entry: group commit for
// the leader's runner, whose workers each commit one small command at a
// time. Apply runs them in order at the entry's index, each exactly as if
// it had its own entry, and returns one Result per command in
// Result.Batch. A replica older than this type cannot apply it: a cluster
// is upgraded to a binary that knows it before any node leads with it.
const CmdBatch CommandType = 31

// Batch is a group of commands committed together. Its body is binary, not
// JSON (the members are already encoded): uvarint count, then per member
// uvarint length and the member's encoding. Members may not be batches.
type Batch struct {
	Commands []Command
}

// Type implements Command.
func (Batch) Type() CommandType { return CmdBatch }

// maxBatch bounds the members of one batch a decoder accepts.
const maxBatch = 4096

// EncodeBatch encodes already encoded commands as one Batch entry.
func EncodeBatch(members [][]byte) []byte {
	size := headerLen + binary.MaxVarintLen64
	for _, m := range members {
		size += binary.MaxVarintLen64 + len(m)
	}
	buf := make([]byte, headerLen, size)
	buf[0], buf[1] = byte(CmdBatch), bodyVersion
	buf = binary.AppendUvarint(buf, uint64(len(members)))
	for _, m := range members {
		buf = binary.AppendUvarint(buf, uint64(len(m)))
		buf = append(buf, m...)
	}
	return buf
}

func encodeBatch(b Batch) ([]byte, error) {
	members := make([][]byte, len(b.Commands))
	for i, c := range b.Commands {
		if _, nested := c.(Batch); nested {
			return nil, fmt.Errorf("fsm: encode batch: member %d is a batch", i)
		}
		m, err := Encode(c)
		if err != nil {
			return nil, err
		}
		members[i] = m
	}
	return EncodeBatch(members), nil
}

func decodeBatch(body []byte) (Command, error) {
	n, k := binary.Uvarint(body)
	if k <= 0 || n == 0 || n > maxBatch {
		return nil, fmt.Errorf("%w: batch: bad member count", ErrDecode)
	}
	body = body[k:]
	b := Batch{Commands: make([]Command, 0, n)}
	for i := uint64(0); i < n; i++ {
		l, k := binary.Uvarint(body)
		if k <= 0 || l > uint64(len(body)-k) {
			return nil, fmt.Errorf("%w: batch: member %d: bad length", ErrDecode, i)
		}
		m := body[k : k+int(l)]
		body = body[k+int(l):]
		if len(m) > 0 && CommandType(m[0])&^IgnoreUnknown == CmdBatch {
			return nil, fmt.Errorf("%w: batch: member %d is a batch", ErrDecode, i)
		}
		c, err := Decode(m)
		if err != nil {
			return nil, fmt.Errorf("batch member %d: %w", i, err)
		}
		b.Commands = append(b.Commands, c)
	}
	if len(body) != 0 {
		return nil, fmt.Errorf("%w: batch: %d trailing bytes", ErrDecode, len(body))
	}
	return b, nil
}
