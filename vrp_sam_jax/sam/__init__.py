"""SAM-only features of the command line, over `sam_port` (no VRP encoder): the embedded SAM
round trip (`demo`, `vrp-sam sam-demo`) and the automatic mask generator over image files
(`segment_everything`, `vrp-sam sam-everything`)."""
