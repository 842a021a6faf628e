package migrate_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/consentd/consentd/internal/migrate"
)

func TestReadContacts(t *testing.T) {
	tests := []struct {
		name, column, in string
		want             []string // "line contact"
		wantErr          string
	}{
		{"one per line, as written", "", "+44 20 7946 0958\r\n\n  Ada@Example.COM \n", []string{"1 +44 20 7946 0958", "3   Ada@Example.COM "}, ""},
		{"blank lines skipped", "", "\n \t\nx@example.com", []string{"3 x@example.com"}, ""},
		{"a CSV column, lines where rows start", "email",
			"id,email\n1,ada@example.com\n2,\"lena@bücher.example\"\n3,\"a, quoted\nfield\"\n4,\n5,grace@example.org\n",
			[]string{"2 ada@example.com", "3 lena@bücher.example", "4 a, quoted\nfield", "7 grace@example.org"}, ""},
		{"a CSV header with a byte-order mark", "contact", "\ufeffcontact\n+442079460958\n", []string{"2 +442079460958"}, ""},
		{"no such column", "phone", "id,email\n1,a@example.com\n", nil, `header: no column "phone"`},
		{"a CSV record longer than any identifier", "email",
			"id,email\n1,a@example.com\n2,\"" + strings.Repeat("x", 200<<10) + "\"\n3,b@example.com\n", []string{"2 a@example.com"}, "after line 2: a record longer than"},
		{"a line longer than any identifier", "", "a@example.com\n" + strings.Repeat("x", 70<<10) + "\n", []string{"1 a@example.com"}, "line 2: longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			err := migrate.ReadContacts(strings.NewReader(tt.in), tt.column, func(line int, contact string) error {
				got = append(got, fmt.Sprintf("%d %s", line, contact))
				return nil
			})
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
