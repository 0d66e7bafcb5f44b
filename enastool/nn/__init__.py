"""enastool.nn"""
