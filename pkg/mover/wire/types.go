package wire

// Type identifies a frame.
type Type uint8

// Frame types. Values are part of the protocol: append only.
const (
	THello Type = iota + 1
	THelloAck
	TIndexReq
	TIndexChunk
	TIndexEnd
	TMkdir
	TSymlink
	TLink
	TDelete
	TRename
	TMeta
	TFile
	TBegin
	TData
	TPunch
	TEnd
	THashReq
	THashes
	TSync
	TSyncAck
	TVerifyReq
	TVerifyRecs
	TVerifyResp
	TDone
	TError
	TNode // a fifo or device node (mknod)
	typeEnd
)

func (t Type) valid() bool { return t >= THello && t < typeEnd }

// Version is the protocol version; peers must match exactly.
const Version = 6 // 6: Sync says whether the pass is an instant of the source

// Volume modes carried in Hello.
const (
	ModeTree  = 0
	ModeBlock = 1
)
