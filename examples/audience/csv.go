package main

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"iter"
	"strings"
	"sync/atomic"
)

// headerMode says whether the input's first row is a header.
type headerMode string

const (
	headerAuto headerMode = "auto" // a header when its first cell is not a plausible contact
	headerYes  headerMode = "yes"
	headerNo   headerMode = "no"
)

func (m headerMode) MarshalText() ([]byte, error) { return []byte(m), nil }

func (m *headerMode) UnmarshalText(b []byte) error {
	switch v := headerMode(b); v {
	case headerAuto, headerYes, headerNo:
		*m = v
		return nil
	}
	return fmt.Errorf("want auto, yes or no, got %q", b)
}

// isHeader says whether a first row whose first cell is cell is a header.
func (m headerMode) isHeader(cell string) bool {
	switch m {
	case headerYes:
		return true
	case headerNo:
		return false
	}
	return !plausibleContact(cell)
}

// plausibleContact reports whether a first cell looks like a contact rather
// than a column name: contacts are email addresses (an '@'), phone numbers
// (digits) or external ids (crm:12345, a ':'); column names ("email",
// "Contact", "e-mail address") have none of them. An empty cell is a contact, an invalid one: a header names its
// column.
func plausibleContact(cell string) bool {
	cell = strings.TrimSpace(cell)
	return cell == "" || strings.ContainsAny(cell, "@:0123456789")
}

// contactReader reads the first column of a CSV: blank lines are skipped,
// rows may have any number of columns, and a malformed row stops it with an
// error naming its line.
type contactReader struct {
	r    *csv.Reader
	mode headerMode

	first    string // the first row's first cell, once start has run
	hasFirst bool   // the input has a first row
	header   bool   // and it is a header
	err      error  // why reading stopped early, if it did
	onError  func() // called once when a row is malformed
}

func newContactReader(r io.Reader, mode headerMode) *contactReader {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1 // other columns are ignored, however many
	cr.ReuseRecord = true   // a row's cells are fresh strings; only the slice is reused
	return &contactReader{r: cr, mode: mode}
}

// start reads the first row and decides whether it is a header.
func (c *contactReader) start() error {
	rec, err := c.r.Read()
	switch {
	case errors.Is(err, io.EOF):
		return nil
	case err != nil:
		return describe(err)
	}
	// A spreadsheet's byte order mark is not part of the first cell.
	c.first = strings.TrimPrefix(rec[0], "\ufeff")
	c.hasFirst = true
	c.header = c.mode.isHeader(c.first)
	return nil
}

// headerCell returns the header's first cell, when the input has a header.
func (c *contactReader) headerCell() (string, bool) {
	return c.first, c.hasFirst && c.header
}

// contacts yields every contact after the header, counting them in n. On a
// malformed row it records the error in c.err, calls onError and stops.
func (c *contactReader) contacts(n *atomic.Uint64) iter.Seq[string] {
	return func(yield func(string) bool) {
		if !c.hasFirst {
			return
		}
		if !c.header {
			n.Add(1)
			if !yield(c.first) {
				return
			}
		}
		for {
			rec, err := c.r.Read()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				c.err = describe(err)
				if c.onError != nil {
					c.onError()
				}
				return
			}
			n.Add(1)
			if !yield(rec[0]) {
				return
			}
		}
	}
}

// describe says what is wrong with the input: csv's errors name the line
// ("parse error on line 3, column 4: bare \" in non-quoted-field").
func describe(err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return fmt.Errorf("malformed CSV on stdin: %v", err)
	}
	return fmt.Errorf("reading stdin: %v", err)
}
