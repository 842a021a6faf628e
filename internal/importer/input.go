package importer

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/consentd/consentd/consent"
)

// Mapping says which input column holds each field: --map flags over a
// --mapping file over the default names.
type Mapping struct {
	fields [numFields]mapped
	// purposeColumns, when set, turns each listed column into one (contact,
	// purpose) per record whose cell is the status.
	purposeColumns map[string]mapped
	file           string // --mapping, for messages
}

// mapped is a column name and the flag that named it ("" for a default).
type mapped struct {
	column string
	by     string // "--map contact=Email" or "--mapping FILE: fields.contact"
}

// FieldNames lists the fields a mapping may name, in the order of the
// default header.
func FieldNames() []string { return append([]string(nil), fieldNames[:]...) }

// defaultMapping takes every field from the column of its own name.
func defaultMapping() *Mapping {
	m := &Mapping{}
	for f := range numFields {
		m.fields[f] = mapped{column: fieldNames[f]}
	}
	return m
}

// NewMapping reads the --mapping file (if any; "" for none) and the --map
// FIELD=COLUMN flags, which override it.
func NewMapping(file string, flags []string) (*Mapping, error) {
	m := defaultMapping()
	m.file = file
	if file != "" {
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("--mapping: %w", err)
		}
		var mf struct {
			Fields         map[string]string `json:"fields"`
			PurposeColumns map[string]string `json:"purpose_columns"`
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&mf); err != nil {
			return nil, fmt.Errorf("--mapping %s: %v (want {\"fields\": {FIELD: COLUMN, ...}, \"purpose_columns\": {PURPOSE: COLUMN, ...}})", file, err)
		}
		for _, name := range sortedKeys(mf.Fields) {
			f, ok := fieldByName(name)
			if !ok {
				return nil, fmt.Errorf("--mapping %s: fields: unknown field %q (known: %s)", file, name, strings.Join(fieldNames[:], ", "))
			}
			m.fields[f] = mapped{column: mf.Fields[name], by: fmt.Sprintf("--mapping %s: fields.%s", file, name)}
		}
		if len(mf.PurposeColumns) > 0 {
			m.purposeColumns = make(map[string]mapped, len(mf.PurposeColumns))
			for _, p := range sortedKeys(mf.PurposeColumns) {
				m.purposeColumns[p] = mapped{column: mf.PurposeColumns[p], by: fmt.Sprintf("--mapping %s: purpose_columns.%s", file, p)}
			}
		}
	}
	for _, s := range flags {
		name, col, ok := strings.Cut(s, "=")
		if !ok || strings.TrimSpace(col) == "" {
			return nil, fmt.Errorf("--map %q: want FIELD=COLUMN, like --map contact=Email", s)
		}
		f, known := fieldByName(strings.TrimSpace(name))
		if !known {
			return nil, fmt.Errorf("--map %s: unknown field %q (known: %s)", s, name, strings.Join(fieldNames[:], ", "))
		}
		m.fields[f] = mapped{column: col, by: "--map " + s}
	}
	return m, nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// columnKey is how header names are compared: trimmed, case-insensitive.
func columnKey(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// purposeColumn is one column of a --mapping file's purpose_columns.
type purposeColumn struct {
	purpose string
	col     int
}

// layout is a mapping resolved against the input's columns: where each
// field's cell is in a record (-1: no such column, always empty).
type layout struct {
	field    [numFields]int
	purposes []purposeColumn // registry order
}

// resolve places m on the input's columns; col finds a column (false: the
// input has none of that name). The purpose columns must name registered
// purposes.
func (m *Mapping) resolve(reg *consent.Registry, col func(name string) (int, bool)) (*layout, error) {
	l := &layout{}
	for f := range numFields {
		mp := m.fields[f]
		i, ok := col(mp.column)
		switch {
		case ok:
			l.field[f] = i
		case mp.by != "" && (field(f) != fPurpose || m.purposeColumns == nil):
			return nil, fmt.Errorf("%s: the header has no column %q", mp.by, mp.column)
		default:
			l.field[f] = -1
		}
	}
	if m.purposeColumns != nil {
		for name := range m.purposeColumns {
			if _, ok := reg.Lookup(name); !ok {
				return nil, fmt.Errorf("--mapping %s: purpose_columns: unknown purpose %q (known: %s)", m.file, name, purposeNames(reg))
			}
		}
		for _, p := range reg.All() {
			mp, ok := m.purposeColumns[p.Name]
			if !ok {
				continue
			}
			i, ok := col(mp.column)
			if !ok {
				return nil, fmt.Errorf("%s: the header has no column %q", mp.by, mp.column)
			}
			l.purposes = append(l.purposes, purposeColumn{purpose: p.Name, col: i})
		}
	}
	switch {
	case l.field[fContact] < 0:
		return nil, fmt.Errorf("no contact column: the header has no %q column (name yours with --map contact=COLUMN)", m.fields[fContact].column)
	case l.field[fPurpose] < 0 && l.purposes == nil:
		return nil, fmt.Errorf("no purpose column: the header has no %q column and --mapping lists no purpose_columns (name it with --map purpose=COLUMN, or one column per purpose with --mapping)", m.fields[fPurpose].column)
	}
	return l, nil
}

func purposeNames(reg *consent.Registry) string {
	var names []string
	for _, p := range reg.All() {
		names = append(names, p.Name)
	}
	return strings.Join(names, ", ")
}

// record is one input record: its cells in the input's column order, or
// what makes it unreadable.
type record struct {
	line  int
	cells []string
	bad   string // a wrong number of fields, malformed CSV or JSON
}

// recordReader reads an input format.
type recordReader interface {
	// read returns the next record, or io.EOF. Other errors end the import.
	read() (record, error)
	// present reports whether the input has column col: whether the header
	// names it, or (without a header) whether a record read so far had it.
	present(col int) bool
}

// skipBOM drops a UTF-8 byte order mark, which spreadsheet exports put
// before the header.
func skipBOM(br *bufio.Reader) {
	if b, err := br.Peek(3); err == nil && bytes.Equal(b, []byte("\xef\xbb\xbf")) {
		br.Discard(3)
	}
}

// csvInput reads RFC 4180 CSV whose first record is the header.
type csvInput struct {
	r      *csv.Reader
	header []string
}

func newCSVInput(r io.Reader) (*csvInput, error) {
	br := bufio.NewReaderSize(r, 256<<10)
	skipBOM(br)
	cr := csv.NewReader(br)
	cr.ReuseRecord = true
	header, err := cr.Read()
	switch {
	case errors.Is(err, io.EOF):
		return nil, errors.New("the file is empty: want a header line naming the columns")
	case err != nil:
		return nil, fmt.Errorf("reading the header: %w", err)
	}
	return &csvInput{r: cr, header: append([]string(nil), header...)}, nil
}

// column finds a header column by name.
func (c *csvInput) column(name string) (int, bool) {
	k := columnKey(name)
	for i, h := range c.header {
		if columnKey(h) == k {
			return i, true
		}
	}
	return 0, false
}

// present: a CSV file has the columns of its header, in every record.
func (c *csvInput) present(col int) bool { return col >= 0 && col < len(c.header) }

func (c *csvInput) read() (record, error) {
	before := c.r.InputOffset()
	cells, err := c.r.Read()
	if err == nil {
		line, _ := c.r.FieldPos(0)
		return record{line: line, cells: cells}, nil
	}
	var pe *csv.ParseError
	if !errors.As(err, &pe) {
		return record{}, err
	}
	if errors.Is(pe.Err, csv.ErrFieldCount) {
		return record{line: pe.StartLine, bad: fmt.Sprintf("row: has %d fields, the header has %d", len(cells), len(c.header))}, nil
	}
	if c.r.InputOffset() == before {
		return record{}, err // nothing consumed: it would fail forever
	}
	return record{line: pe.StartLine, bad: "row: malformed CSV: " + pe.Err.Error()}, nil
}

// ndjsonInput reads one JSON object per line; keys are column names. Its
// columns are those the mapping names, numbered as they are asked for.
type ndjsonInput struct {
	br    *bufio.Reader
	line  int
	index map[string]int // columnKey → cell
	n     int
	seen  []bool // by cell: whether a line has had its key
}

func newNDJSONInput(r io.Reader) *ndjsonInput {
	br := bufio.NewReaderSize(r, 256<<10)
	skipBOM(br)
	return &ndjsonInput{br: br, index: map[string]int{}}
}

// column gives every name a cell: NDJSON has no header, and a key missing
// from a line is an empty cell.
func (n *ndjsonInput) column(name string) (int, bool) {
	k := columnKey(name)
	if i, ok := n.index[k]; ok {
		return i, true
	}
	n.index[k] = n.n
	n.n++
	n.seen = append(n.seen, false)
	return n.n - 1, true
}

// present: a line without a key has an empty cell, so a column is there
// once a line has had its key.
func (n *ndjsonInput) present(col int) bool { return col >= 0 && col < len(n.seen) && n.seen[col] }

func (n *ndjsonInput) read() (record, error) {
	for {
		b, err := n.br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A line longer than the buffer: gather it (rare).
			long := append([]byte(nil), b...)
			for errors.Is(err, bufio.ErrBufferFull) {
				b, err = n.br.ReadSlice('\n')
				long = append(long, b...)
			}
			b = long
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return record{}, err
		}
		if len(b) == 0 && errors.Is(err, io.EOF) {
			return record{}, io.EOF
		}
		n.line++
		if len(bytes.TrimSpace(b)) == 0 {
			if errors.Is(err, io.EOF) {
				return record{}, io.EOF
			}
			continue
		}
		return n.parse(b), nil
	}
}

func (n *ndjsonInput) parse(b []byte) record {
	rec := record{line: n.line, cells: make([]string, n.n)}
	if n.parseFlat(b, rec.cells) {
		return rec
	}
	// Anything the fast path does not take (escapes, nested values,
	// malformed JSON) goes through encoding/json, which also words the
	// error.
	return n.parseSlow(b)
}

func (n *ndjsonInput) parseSlow(b []byte) record {
	rec := record{line: n.line, cells: make([]string, n.n)}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil {
		rec.bad = "row: not a JSON object: " + err.Error()
		return rec
	}
	if dec.More() {
		rec.bad = "row: more than one JSON value on the line"
		return rec
	}
	for k, v := range obj {
		i, ok := n.index[columnKey(k)]
		if !ok {
			continue // a column nobody asked for
		}
		n.seen[i] = true
		switch v := v.(type) {
		case nil:
		case string:
			rec.cells[i] = v
		case bool:
			rec.cells[i] = fmt.Sprint(v)
		case json.Number:
			rec.cells[i] = v.String()
		default:
			rec.bad = fmt.Sprintf("%s: want a string, got %T", k, v)
			return rec
		}
	}
	return rec
}

// parseFlat reads the common line, a flat object of plain strings, true,
// false, null and numbers, without reflection (encoding/json's map decoding
// was most of an NDJSON import's client time). It reports false, leaving
// cells dirty, for anything else.
func (n *ndjsonInput) parseFlat(b []byte, cells []string) bool {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return len(b) == skipSpace(b, i+1)
	}
	for {
		key, j, ok := plainBytes(b, i)
		if !ok {
			return false
		}
		i = skipSpace(b, j)
		if i >= len(b) || b[i] != ':' {
			return false
		}
		i = skipSpace(b, i+1)
		var val []byte
		switch {
		case i >= len(b):
			return false
		case b[i] == '"':
			if val, i, ok = plainBytes(b, i); !ok {
				return false
			}
		default:
			j := i
			for j < len(b) && (b[j] == '-' || b[j] == '+' || b[j] == '.' || (b[j] >= '0' && b[j] <= '9') ||
				(b[j] >= 'a' && b[j] <= 'z') || (b[j] >= 'A' && b[j] <= 'Z')) {
				j++
			}
			lit := b[i:j]
			switch {
			case string(lit) == "true" || string(lit) == "false":
				val = lit
			case string(lit) == "null":
			case len(lit) > 0 && (lit[0] == '-' || (lit[0] >= '0' && lit[0] <= '9')) && json.Valid(lit):
				val = lit
			default:
				return false
			}
			i = j
		}
		c, ok := n.index[string(key)] // no allocation: the common, exact key
		if !ok {
			c, ok = n.index[columnKey(string(key))]
		}
		if ok {
			cells[c] = string(val)
			n.seen[c] = true
		}
		i = skipSpace(b, i)
		switch {
		case i >= len(b):
			return false
		case b[i] == ',':
			i = skipSpace(b, i+1)
		case b[i] == '}':
			return skipSpace(b, i+1) == len(b)
		default:
			return false
		}
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// plainBytes reads a JSON string at b[i] that has no escapes, no control
// characters and valid UTF-8, and returns its bytes and the index after it.
func plainBytes(b []byte, i int) ([]byte, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, i, false
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			s := b[i+1 : j]
			return s, j + 1, utf8.Valid(s)
		case c == '\\' || c < 0x20:
			return nil, i, false
		}
	}
	return nil, i, false
}
