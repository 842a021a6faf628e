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

func readCSV(r io.Reader, column string, fn func(int, string) error) error {
	cr := csv.NewReader(bufio.NewReaderSize(r, 64<<10))
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err != nil {
		return fmt.Errorf("header: %w", err)
	}
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
			return err
		}
		line, _ := cr.FieldPos(0)
		if col >= len(rec) || strings.TrimSpace(rec[col]) == "" {
			continue
		}
		if err := fn(line, rec[col]); err != nil {
			return err
		}
	}
}
