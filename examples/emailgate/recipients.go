package main

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strings"
)

// emailColumn names the column of addresses, in any case.
const emailColumn = "email"

// unsubscribeField is the template field that holds the message's link; no
// column may take its name.
const unsubscribeField = "UnsubscribeURL"

// recipient is one data row of the CSV.
type recipient struct {
	line   int               // where the row starts in the input, from 1
	email  string            // the address, trimmed
	fields map[string]string // every column by its header name, as given
}

// readRecipients reads the whole CSV: a header row naming the columns (one
// of them email, in any case), then one row per recipient with as many cells
// as the header. Blank lines are skipped. It checks every row and address
// before returning, so a bad input is found before anything is sent.
func readRecipients(r io.Reader) ([]recipient, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = 0 // every row as wide as the header
	header, err := cr.Read()
	switch {
	case errors.Is(err, io.EOF):
		return nil, errors.New("stdin is empty: want CSV with a header row naming an email column")
	case err != nil:
		return nil, describe(err, nil, 0)
	}
	header[0] = strings.TrimPrefix(header[0], "\ufeff") // a spreadsheet's byte order mark
	names := make([]string, len(header))
	emailAt := -1
	seen := map[string]int{}
	for i, h := range header {
		h = strings.TrimSpace(h)
		names[i] = h
		if j, dup := seen[h]; dup {
			return nil, fmt.Errorf("the header names column %q twice (columns %d and %d)", h, j+1, i+1)
		}
		seen[h] = i
		switch {
		case h == unsubscribeField:
			return nil, fmt.Errorf("the header names a column %s: that field is the message's unsubscribe link; rename the column", unsubscribeField)
		case strings.EqualFold(h, emailColumn) && emailAt >= 0:
			return nil, fmt.Errorf("the header names an email column twice (columns %d and %d)", emailAt+1, i+1)
		case strings.EqualFold(h, emailColumn):
			emailAt = i
		}
	}
	if emailAt < 0 {
		return nil, fmt.Errorf("the header row has no email column (columns: %s); name the column of addresses email", strings.Join(names, ", "))
	}

	var list []recipient
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return list, nil
		}
		if err != nil {
			return nil, describe(err, rec, len(header))
		}
		line, _ := cr.FieldPos(0)
		r := recipient{line: line, email: strings.TrimSpace(rec[emailAt]), fields: make(map[string]string, len(rec))}
		for i, v := range rec {
			r.fields[names[i]] = v
		}
		if err := checkAddress(r.email); err != nil {
			return nil, fmt.Errorf("line %d: %v", line, err)
		}
		list = append(list, r)
	}
}

// checkAddress says why s cannot be a recipient: it must be a plain address
// (ada@example.com), which an SMTP server takes as it is.
func checkAddress(s string) error {
	if s == "" {
		return errors.New("the email cell is empty")
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Name != "" || a.Address != s || !plainAddress(s) {
		return fmt.Errorf("%q is not a plain email address; want one like ada@example.com", s)
	}
	return nil
}

// plainAddress reports whether s can stand in an SMTP command and a header
// as it is: no spaces, control characters, angle brackets or quotes.
func plainAddress(s string) bool {
	for _, c := range s {
		if c <= ' ' || c == 0x7f || strings.ContainsRune(`<>"()[]\,;`, c) {
			return false
		}
	}
	return strings.Count(s, "@") == 1
}

// describe says what is wrong with the CSV, naming the line.
func describe(err error, rec []string, width int) error {
	var pe *csv.ParseError
	if !errors.As(err, &pe) {
		return fmt.Errorf("reading stdin: %v", err)
	}
	if errors.Is(pe.Err, csv.ErrFieldCount) {
		return fmt.Errorf("malformed CSV on stdin: line %d has %d cells, the header has %d", pe.StartLine, len(rec), width)
	}
	return fmt.Errorf("malformed CSV on stdin: %v", err)
}
