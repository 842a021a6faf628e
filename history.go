package consent

// PartitionHistory is what verifying one partition's tamper-evident history
// found: its head (keep it elsewhere to catch a later rollback), what was
// checked, and the first break, if any.
type PartitionHistory struct {
	Partition uint32
	HeadSeq   uint64
	HeadLink  [32]byte
	Events    int // events present
	Erased    int // events removed by erasures, accounted for by their markers
	Contacts  int // records checked against their histories
	Break     *HistoryBreak
}

// HistoryBreak is the first place where a partition's history does not hold:
// an event altered, deleted, copied or restored after erasure, or a record
// that does not follow from its history.
type HistoryBreak struct {
	Seq    uint64
	Reason string
}

// Intact reports whether no partition has a break.
func Intact(parts []PartitionHistory) bool {
	for _, p := range parts {
		if p.Break != nil {
			return false
		}
	}
	return true
}
