// Command gocheck checks Keyledger's audit log material with Go's own
// golang.org/x/mod/sumdb/note and sumdb/tlog, as an outside auditor would
// (tests/audit/test_audit_go.py runs it).
//
//	gocheck note VKEY FILE                  a signed checkpoint: prints "SIZE ROOT"
//	gocheck inclusion VKEY FILE             a C2SP tlog-proof (extra = event bytes)
//	gocheck consistency VKEY OLD_CP FILE    `old N`, proof lines, blank, checkpoint
//
// Exit 0 when the material verifies, 1 (with the reason) when not.
package main

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// open verifies a signed checkpoint with the log's vkey and returns its size and root.
func open(vkey, text string) (int64, tlog.Hash, error) {
	var root tlog.Hash
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return 0, root, err
	}
	n, err := note.Open([]byte(text), note.VerifierList(v))
	if err != nil {
		return 0, root, err
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) < 4 || lines[0] != v.Name() {
		return 0, root, errors.New("not a checkpoint of this log")
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil {
		return 0, root, err
	}
	raw, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(raw) != tlog.HashSize {
		return 0, root, errors.New("bad root hash")
	}
	copy(root[:], raw)
	return size, root, nil
}

func hashes(lines []string) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, 0, len(lines))
	for _, l := range lines {
		raw, err := base64.StdEncoding.DecodeString(l)
		if err != nil || len(raw) != tlog.HashSize {
			return nil, fmt.Errorf("bad proof line %q", l)
		}
		var h tlog.Hash
		copy(h[:], raw)
		out = append(out, h)
	}
	return out, nil
}

func read(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		fail(err)
	}
	return string(data)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "gocheck:", err)
	os.Exit(1)
}

func main() {
	if len(os.Args) < 4 {
		fail(errors.New("usage: gocheck note|inclusion|consistency VKEY ..."))
	}
	vkey := os.Args[2]
	switch os.Args[1] {
	case "note":
		size, root, err := open(vkey, read(os.Args[3]))
		if err != nil {
			fail(err)
		}
		fmt.Println(size, root)
	case "inclusion":
		head, cp, ok := strings.Cut(read(os.Args[3]), "\n\n")
		if !ok {
			fail(errors.New("no checkpoint"))
		}
		size, root, err := open(vkey, cp)
		if err != nil {
			fail(err)
		}
		lines := strings.Split(head, "\n")
		if lines[0] != "c2sp.org/tlog-proof@v1" || !strings.HasPrefix(lines[1], "extra ") {
			fail(errors.New("not a tlog-proof with event bytes"))
		}
		event, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(lines[1], "extra "))
		if err != nil {
			fail(err)
		}
		index, err := strconv.ParseInt(strings.TrimPrefix(lines[2], "index "), 10, 64)
		if err != nil {
			fail(err)
		}
		proof, err := hashes(lines[3:])
		if err != nil {
			fail(err)
		}
		if err := tlog.CheckRecord(proof, size, root, index, tlog.RecordHash(event)); err != nil {
			fail(err)
		}
		fmt.Println("inclusion ok", index, size)
	case "consistency":
		oldSize, oldRoot, err := open(vkey, read(os.Args[3]))
		if err != nil {
			fail(err)
		}
		head, cp, ok := strings.Cut(read(os.Args[4]), "\n\n")
		if !ok {
			fail(errors.New("no checkpoint"))
		}
		size, root, err := open(vkey, cp)
		if err != nil {
			fail(err)
		}
		lines := strings.Split(head, "\n")
		if lines[0] != fmt.Sprintf("old %d", oldSize) {
			fail(fmt.Errorf("proof is from %q, the trusted checkpoint has %d", lines[0], oldSize))
		}
		proof, err := hashes(lines[1:])
		if err != nil {
			fail(err)
		}
		if err := tlog.CheckTree(proof, size, root, oldSize, oldRoot); err != nil {
			fail(err)
		}
		fmt.Println("consistency ok", oldSize, size)
	default:
		fail(errors.New("unknown mode " + os.Args[1]))
	}
}
