package main

import (
	"context"
	"encoding/hex"
	"flag"
	"fmt"
	"strings"
)

func setupVerify(fs *flag.FlagSet) runner {
	heads := fs.Bool("heads", false, "")
	return func(ctx context.Context, c *call, _ []string) (int, error) {
		resp, err := c.client.VerifyHistory(ctx)
		if err != nil {
			return exitError, err
		}
		code := exitOK
		if !resp.GetIntact() {
			code = exitDenied
		}
		if c.out.json {
			return code, c.out.protoJSON(resp)
		}
		var events, erased, contacts, breaks uint64
		broken := 0
		for _, p := range resp.GetPartitions() {
			events += p.GetEvents()
			erased += p.GetErasedEvents()
			contacts += p.GetContacts()
			if *heads {
				if err := c.out.linef("partition %d head %d %s", p.GetPartition(), p.GetHeadSeq(), hex.EncodeToString(p.GetHeadLink())); err != nil {
					return exitError, err
				}
			}
			listed := p.GetBreaks()
			if len(listed) == 0 && p.GetFirstBreak() != nil { // a consentd from before breaks were listed
				listed = append(listed, p.GetFirstBreak())
			}
			n := max(p.GetBreakCount(), uint64(len(listed)))
			if n == 0 {
				continue
			}
			broken++
			breaks += n
			for _, b := range listed {
				where := fmt.Sprintf("partition %d, event %d", p.GetPartition(), b.GetSeq())
				if b.GetSeq() == 0 {
					where = fmt.Sprintf("partition %d", p.GetPartition())
				}
				if err := c.out.linef("TAMPERED %s: %s", where, b.GetProblem()); err != nil {
					return exitError, err
				}
			}
			if more := n - uint64(len(listed)); more > 0 {
				noun := "breaks"
				if more == 1 {
					noun = "break"
				}
				if err := c.out.linef("TAMPERED partition %d: %d more %s, not listed (only the earliest %d of a partition are)", p.GetPartition(), more, noun, len(listed)); err != nil {
					return exitError, err
				}
			}
		}
		counts := fmt.Sprintf("%s, %s erased (accounted for by erasure markers), %s checked against the history",
			plural(events, "event"), plural(erased, "event"), plural(contacts, "record"))
		parts := uint64(len(resp.GetPartitions()))
		if broken > 0 {
			return code, c.out.linef("history tampered: %s in %d of %s; %s", plural(breaks, "break"), broken, plural(parts, "partition"), counts)
		}
		return code, c.out.linef("history intact: %s; %s", plural(parts, "partition"), counts)
	}
}

func plural(n uint64, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	if strings.HasSuffix(noun, "s") {
		return fmt.Sprintf("%d %ses", n, noun)
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
