package migration

import (
	"time"
)

// Reasons a user sees in status.reason and the Progressing condition.
const (
	ReasonPolicyNotFound          = "PolicyNotFound"
	ReasonWaitingForCleanup       = "WaitingForPreviousAttemptCleanup"
	ReasonStarted                 = "AttemptStarted"
	ReasonWaitingForSourceVolumes = "WaitingForSourceVolumes"
	ReasonWaitingForDestination   = "WaitingForDestination"
	ReasonDestinationFailed       = "DestinationFailed"
	ReasonSourceFailed            = "SourceFailed"
	ReasonPrepareTimeout          = "PrepareTimeout"
	ReasonSourceLost              = "SourceLostBeforeCopy"
	ReasonInitialSyncTimeout      = "InitialSyncTimeout"
	ReasonCatchUpTimeout          = "CatchUpTimeout"
	ReasonFinalSyncTimeout        = "FinalSyncTimeout"
	ReasonInitialSync             = "InitialSyncInProgress"
	ReasonCatchingUp              = "CatchingUp"
	ReasonPlacementNotEnrolled    = "PlacementNotEnrolled"
	ReasonWaitingForAppToStop     = "WaitingForAppToStop"
	ReasonFinalSync               = "FinalSyncInProgress"
	ReasonDigestMismatch          = "DigestMismatch"
	ReasonWaitingForApp           = "WaitingForAppAvailable"
	ReasonAppNotAvailable         = "AppNotAvailableInTime"
	ReasonReleasingSource         = "ReleasingSourceData"
	ReasonHandingOver             = "HandingOverVolumes"
	ReasonCompleted               = "Completed"
	ReasonAppAvailabilityUnknown  = "CompletedAppAvailabilityUnknown"
)

// pollLimit bounds how long a waiting step sleeps without an event.
const pollLimit = 30 * time.Second
