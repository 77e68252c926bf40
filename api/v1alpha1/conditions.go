package v1alpha1

// Condition types shared by more than one kind. Kind-specific condition types live beside
// their kind.
const (
	// ConditionReady summarizes whether the object does what it was created for. It is the
	// condition that `kubectl wait --for=condition=Ready` and GitOps health checks look at.
	ConditionReady = "Ready"
)

// Reasons shared by more than one kind.
const (
	// ReasonReconciling means the controller has not finished evaluating the object yet.
	ReasonReconciling = "Reconciling"
)
