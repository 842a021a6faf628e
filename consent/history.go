package consent

// PartitionHistory is what verifying one partition's tamper-evident history
// found: its head (keep it elsewhere to catch a later rollback), what was
// checked, and the breaks, if any.
type PartitionHistory struct {
	Partition uint32
	HeadSeq   uint64
	HeadLink  [32]byte
	Events    int // events present
	Erased    int // events removed by erasures, accounted for by their markers
	Contacts  int // records checked against their histories
	// Breaks are the earliest breaks, in event order: a bounded number
	// (chain.MaxListed), so a badly damaged store costs no more memory to
	// check than an intact one. BreakCount counts every break found.
	Breaks     []HistoryBreak
	BreakCount int
}

// HistoryBreak is a place where a partition's history does not hold: an
// event altered, deleted, copied or restored after erasure, a record that
// does not follow from its history, or a key that cannot be read as what
// its name says. Seq is 0 when it belongs to no event.
type HistoryBreak struct {
	Seq     uint64
	Problem string
}

// Intact reports whether no partition has a break.
func Intact(parts []PartitionHistory) bool {
	for _, p := range parts {
		if p.BreakCount > 0 {
			return false
		}
	}
	return true
}
