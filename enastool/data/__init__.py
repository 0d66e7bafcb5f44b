"""enastool.data"""
