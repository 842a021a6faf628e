package migrate

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
)

// maxLine bounds one line of the contacts file: far more than any
// identifier (identifier.MaxInputBytes), so a longer one is a wrong file.
const maxLine = 64 << 10

// ReadContacts reads the identifiers an operator supplies, as their systems
// wrote them, and calls fn with each and its line number (from 1). Without
// column the file holds one identifier per line, taken as it stands (a
// trailing CR dropped); empty lines are skipped. With column it is CSV with
// a header row, and the identifier is that column's field; the line number
// is where the row starts. Nothing is kept: a file of millions of lines
// costs memory only in what fn keeps.
func ReadContacts(r io.Reader, column string, fn func(line int, contact string) error) error {
	if column != "" {
		return readCSV(r, column, fn)
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxLine)
	n := 0
	for sc.Scan() {
		n++
		s := strings.TrimSuffix(sc.Text(), "\r")
		if strings.TrimSpace(s) == "" {
			continue
		}
		if err := fn(n, s); err != nil {
			return err
		}
	}
	if errors.Is(sc.Err(), bufio.ErrTooLong) {
		return fmt.Errorf("line %d: longer than %d bytes: is this a file of identifiers?", n+1, maxLine)
	}
	return sc.Err()
}

// csvBuffer is the buffer the CSV reader reads through.
const csvBuffer = 64 << 10

// errRecordTooLong: a CSV record ran past maxLine (boundedRecords).
var errRecordTooLong = errors.New("record too long")

// boundedRecords stops a CSV reader that has read more than limit bytes:
// encoding/csv bounds neither a field nor a record, and a quote left open
// would otherwise read the rest of the file into one field. readCSV moves
// limit on after every record.
type boundedRecords struct {
	r           io.Reader
	read, limit int64
}

func (b *boundedRecords) Read(p []byte) (int, error) {
	if b.read >= b.limit {
		return 0, errRecordTooLong
	}
	if int64(len(p)) > b.limit-b.read {
		p = p[:b.limit-b.read]
	}
	n, err := b.r.Read(p)
	b.read += int64(n)
	return n, err
}

func readCSV(r io.Reader, column string, fn func(int, string) error) error {
	// The reader's buffer may hold the next records already: the bound is
	// a record's maxLine past where the last one ended, plus the buffer.
	br := &boundedRecords{r: r, limit: maxLine + csvBuffer}
	cr := csv.NewReader(bufio.NewReaderSize(br, csvBuffer))
	last := 0 // the line the last record read starts on
	tooLong := func(err error) error {
		if errors.Is(err, errRecordTooLong) {
			return fmt.Errorf("after line %d: a record longer than %d bytes: is this a file of identifiers?", last, maxLine)
		}
		return err
	}
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err != nil {
		return fmt.Errorf("header: %w", tooLong(err))
	}
	br.limit = cr.InputOffset() + maxLine + csvBuffer
	last = 1
	col := -1
	for i, h := range header {
		if strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")) == column {
			col = i
		}
	}
	if col < 0 {
		return fmt.Errorf("header: no column %q", column)
	}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return tooLong(err)
		}
		br.limit = cr.InputOffset() + maxLine + csvBuffer
		line, _ := cr.FieldPos(0)
		last = line
		if col >= len(rec) || strings.TrimSpace(rec[col]) == "" {
			continue
		}
		if err := fn(line, rec[col]); err != nil {
			return err
		}
	}
}
