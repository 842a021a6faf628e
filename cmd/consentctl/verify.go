package main

import (
	"context"
	"encoding/hex"
	"flag"
	"fmt"
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
		var events, erased, contacts uint64
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
			if b := p.GetFirstBreak(); b != nil {
				broken++
				if err := c.out.linef("TAMPERED partition %d, event %d: %s", p.GetPartition(), b.GetSeq(), b.GetReason()); err != nil {
					return exitError, err
				}
			}
		}
		counts := fmt.Sprintf("%s, %s erased (accounted for by erasure markers), %s checked against the history",
			plural(events, "event"), plural(erased, "event"), plural(contacts, "record"))
		parts := uint64(len(resp.GetPartitions()))
		if broken > 0 {
			return code, c.out.linef("history tampered: %d of %s broken; %s", broken, plural(parts, "partition"), counts)
		}
		return code, c.out.linef("history intact: %s; %s", plural(parts, "partition"), counts)
	}
}

func plural(n uint64, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
