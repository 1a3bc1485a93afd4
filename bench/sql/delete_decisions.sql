DELETE FROM routing_decisions WHERE model_version = $version;
