package inventory

import "time"

var testNow = time.Date(2026, 11, 27, 6, 0, 0, 0, time.UTC)
